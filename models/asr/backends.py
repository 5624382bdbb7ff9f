"""ASR backends behind `SpeechRecognizer`: Whisper through faster-whisper (CTranslate2) and pocketsphinx.

Both take 16 kHz mono float32 clips and cut long audio into speech chunks with the Silero voice-activity
detector that ships inside faster-whisper (ONNX, no download).

The Whisper backend decodes ACROSS requests: the speech chunks of every clip in a batch that share a
language go through one encoder pass and one beam search (`BatchedInferencePipeline.forward`), then each
chunk's segments are mapped back to its own request and its original timeline. On a CPU with more than
one core, a batch is cut into one part per core, decoded at once on single-threaded CTranslate2 workers:
on 2 cores, one 2-clip call took as long as two single calls (CTranslate2's intra-op threads did not
help either), while 2 parts on 2 workers served 1.8x the clips per second (issue 11).

>>> backend = WhisperBackend(Path("artifact"), device="cpu", options=WhisperOptions())
>>> backend.transcribe_batch([samples], [None])[0].text
' It was the first great sorrow of his life. ...'
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gpu.cores import usable_cores
from hub.errors import HubError, InvalidInput, ModelLoadError

SAMPLE_RATE_HZ = 16_000
# Whisper sees 30 s windows; VAD chunks are packed up to this length.
CHUNK_S = 30.0


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Transcript:
    text: str
    segments: tuple[Segment, ...]
    language: str
    # Duration-weighted mean token log-probability (Whisper only): how sure the model is of its words.
    avg_logprob: float | None = None
    # Highest gzip compression ratio of a decoded chunk: above ~2.4 the decoder was looping.
    max_compression_ratio: float = 0.0


@dataclass(frozen=True)
class LanguagePrompt:
    """Text Whisper reads as "heard before" each chunk of one language: an initial prompt (e.g.
    "以下是普通话的句子。", which nudges towards Simplified, punctuated Mandarin) and domain hotwords."""

    prompt: str | None = None
    hotwords: tuple[str, ...] = ()
    max_hotword_tokens: int = 160


@dataclass(frozen=True)
class WhisperOptions:
    beam_size: int = 5
    batch_size: int = 8  # speech chunks per encoder/decoder call
    compute_type: str = "auto"  # auto: int8 on CPU, float16 on CUDA
    cpu_threads: int = 0  # 0: one per worker, a worker per core on a CPU; else CTranslate2's threads, 1 worker
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    prompts: dict[str, LanguagePrompt] = field(default_factory=dict)  # language -> its prompt


def clean_text(text: str, language: str) -> str:
    """Segment text as served: stripped; Mandarin in Simplified characters with Chinese punctuation."""
    if language == "zh":
        from models.asr.zh_text import clean_mandarin

        return clean_mandarin(text)
    return text.strip()


def _letters(text: str) -> str:
    return "".join(ch for ch in text if ch.isalnum())


def parse_device(device: str) -> tuple[str, int]:
    """'cpu' -> ('cpu', 0); 'cuda:1' -> ('cuda', 1)."""
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda"):
        raise ModelLoadError(f"unknown device {device!r} (expected cpu or cuda[:n])")
    return kind, int(index or 0)


def speech_chunks(audio: np.ndarray) -> list[dict]:
    """Speech regions (sample offsets) found by Silero VAD, none longer than a Whisper window."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    return get_speech_timestamps(audio, VadOptions(max_speech_duration_s=CHUNK_S, min_silence_duration_ms=160))


class WhisperBackend:
    """Any CTranslate2 Whisper model directory (model.bin, config.json, tokenizer.json)."""

    def __init__(self, model_dir: Path, device: str, options: WhisperOptions) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        kind, index = parse_device(device)
        compute_type = options.compute_type
        if compute_type == "auto":
            compute_type = "int8" if kind == "cpu" else "float16"
        cores = usable_cores()
        # parts of a batch decoded at once (module doc); a GPU batches inside one call instead
        self.parts = cores if kind == "cpu" and options.cpu_threads == 0 and cores > 1 else 1
        try:
            self.model = WhisperModel(
                str(model_dir), device=kind, device_index=index, compute_type=compute_type,
                cpu_threads=1 if self.parts > 1 else options.cpu_threads, num_workers=self.parts,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelLoadError(f"cannot load the CTranslate2 Whisper model in {model_dir}: {exc}") from exc
        self.pipeline = BatchedInferencePipeline(self.model)
        self._pool = ThreadPoolExecutor(self.parts, thread_name_prefix="listen-ct2") if self.parts > 1 else None
        self.options = options
        self.multilingual = bool(self.model.model.is_multilingual)
        self._hotword_cache: dict[tuple[str, tuple[str, ...]], str] = {}

    @property
    def languages(self) -> frozenset[str]:
        return frozenset(self.model.supported_languages)

    def transcribe_batch(self, clips: list[np.ndarray], languages: list[str | None],
                         hotwords: list[tuple[str, ...]] | None = None) -> list[Transcript]:
        """One transcript per clip. Chunks of every clip that share a language and hotwords are decoded
        together, in calls of at most `batch_size`, one part per worker at once (module doc)."""
        hotwords = hotwords or [()] * len(clips)
        plans = self._map(lambda job: self._plan(*job), list(zip(clips, languages, hotwords, strict=True)))
        jobs = []  # (decoding key, [(owner, features, meta), ...]) per call
        for key in sorted({p["key"] for p in plans}):
            owners = [i for i, p in enumerate(plans) if p["key"] == key and p["features"]]
            items = [(i, f, m) for i in owners for f, m in zip(plans[i]["features"], plans[i]["metas"], strict=True)]
            size = min(self.options.batch_size, -(-len(items) // self.parts)) if items else 1
            jobs += [(key, items[start : start + size]) for start in range(0, len(items), size)]
        decoded: list[list[list[dict]]] = [[] for _ in plans]  # per request, per chunk: segment dicts
        for (_, part), outputs in zip(jobs, self._map(self._decode, jobs), strict=True):
            for (owner, _, _), chunk_segments in zip(part, outputs, strict=True):
                decoded[owner].append(chunk_segments)  # jobs keep each request's chunks in order
        return [self._assemble(plan, chunks) for plan, chunks in zip(plans, decoded, strict=True)]

    def _map(self, fn, jobs: list) -> list:
        """fn over jobs, at once on the workers when there are several (CTranslate2 and the VAD's ONNX
        run without the GIL)."""
        if self._pool is None or len(jobs) < 2:
            return [fn(job) for job in jobs]
        return list(self._pool.map(fn, jobs))

    def _decode(self, job) -> list[list[dict]]:
        key, part = job
        tokenizer, options = self._decoding_setup(*key)
        return self.pipeline.forward(np.stack([f for _, f, _ in part]), tokenizer, [m for _, _, m in part], options)

    def _plan(self, audio: np.ndarray, language: str | None, extra_hotwords: tuple[str, ...]) -> dict:
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.vad import SpeechTimestampsMap, collect_chunks

        fe = self.model.feature_extractor
        regions = speech_chunks(audio)
        chunks, metas = collect_chunks(audio, regions, max_duration=CHUNK_S) if regions else ([], [])
        features = [fe(chunk)[..., :-1] for chunk in chunks]
        if language is None:
            language = self._detect_language(features) if self.multilingual else "en"
        return dict(
            key=(language, self._hotword_text(language, extra_hotwords)), language=language,
            features=[pad_or_trim(f) for f in features], metas=metas,
            ts_map=SpeechTimestampsMap(regions, SAMPLE_RATE_HZ) if regions else None,
        )

    def _hotword_text(self, language: str, extra: tuple[str, ...]) -> str:
        """The request's own hotwords first (they are what this call is about), then the model's."""
        from models.asr.hotwords import fit_to_budget

        key = (language, extra)
        text = self._hotword_cache.get(key)  # plans run on several threads: one lookup, no re-read
        if text is None:
            prompt = self.options.prompts.get(language, LanguagePrompt())
            words = list(dict.fromkeys([*extra, *prompt.hotwords]))
            text = fit_to_budget(words, self._count_tokens, prompt.max_hotword_tokens) if words else ""
            if len(self._hotword_cache) > 256:  # per-request hotwords: keep the cache bounded
                self._hotword_cache.clear()
            self._hotword_cache[key] = text
        return text

    def _count_tokens(self, text: str) -> int:
        return len(self.model.hf_tokenizer.encode(text, add_special_tokens=False).ids)

    def _detect_language(self, features: list[np.ndarray]) -> str:
        if not features:
            return "en"
        language, _prob, _all = self.model.detect_language(features=np.concatenate(features, axis=1))
        return language

    def _decoding_setup(self, language: str, hotwords: str):
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

        tokenizer = Tokenizer(self.model.hf_tokenizer, self.multilingual, task="transcribe", language=language)
        o = self.options
        options = TranscriptionOptions(
            beam_size=o.beam_size, best_of=o.beam_size, patience=1.0, length_penalty=1.0,
            repetition_penalty=1.0, no_repeat_ngram_size=0, log_prob_threshold=o.log_prob_threshold,
            no_speech_threshold=o.no_speech_threshold, compression_ratio_threshold=2.4,
            condition_on_previous_text=False, prompt_reset_on_temperature=0.5, temperatures=[0.0],
            initial_prompt=self.options.prompts.get(language, LanguagePrompt()).prompt, prefix=None,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            # Timestamps on: segments get real start/end times inside each chunk.
            without_timestamps=False, max_initial_timestamp=0.0, word_timestamps=False,
            prepend_punctuations="\"'“¿([{-", append_punctuations="\"'.。,，!！?？:：”)]}、",
            multilingual=False, max_new_tokens=None, clip_timestamps="0",
            hallucination_silence_threshold=None, hotwords=hotwords or None,
        )
        return tokenizer, options

    def _echoes_prompt(self, text: str, plan: dict) -> bool:
        # On audio it cannot read, Whisper repeats the text it was prompted with ("以下是普通话的句子。"):
        # that is no transcript.
        prompt = self.options.prompts.get(plan["language"], LanguagePrompt()).prompt
        if not prompt:
            return False
        said, prompted = _letters(text), _letters(clean_text(prompt, plan["language"]))
        return bool(prompted) and said.replace(prompted, "") == ""

    def _assemble(self, plan: dict, chunks: list[list[dict]]) -> Transcript:
        segments: list[Segment] = []
        logprob_sum = weight_sum = max_ratio = 0.0
        for meta, chunk_segments in zip(plan["metas"], chunks, strict=True):
            for seg in chunk_segments:
                max_ratio = max(max_ratio, float(seg["compression_ratio"]))
                # Whisper's own silence rule: likely no speech AND a low-confidence decode -> drop it.
                if seg["no_speech_prob"] > self.options.no_speech_threshold and (
                    seg["avg_logprob"] < self.options.log_prob_threshold
                ):
                    continue
                text = clean_text(seg["text"], plan["language"])
                if not text or self._echoes_prompt(text, plan):
                    continue
                start_s = plan["ts_map"].get_original_time(seg["start"])
                end_s = plan["ts_map"].get_original_time(seg["end"], is_end=True)
                segments.append(Segment(start_s=float(start_s), end_s=float(max(end_s, start_s)), text=text))
            if chunk_segments:
                weight = max(float(meta["duration"]), 1e-3)
                logprob_sum += float(chunk_segments[0]["avg_logprob"]) * weight
                weight_sum += weight
        spaced = plan["language"] not in ("zh", "ja", "yue", "th", "lo", "my", "bo")
        text = (" " if spaced else "").join(s.text for s in segments)
        return Transcript(
            text=text, segments=tuple(segments), language=plan["language"],
            avg_logprob=(logprob_sum / weight_sum) if weight_sum else None,
            max_compression_ratio=max_ratio,
        )


class SphinxBackend:
    """CMU pocketsphinx (English acoustic model + n-gram LM + dictionary): small, fast, weaker."""

    multilingual = False
    languages = frozenset({"en"})

    def __init__(self, artifact_dir: Path, metadata: dict) -> None:
        from pocketsphinx import Decoder

        paths = {key: artifact_dir / str(metadata.get(key, default)) for key, default in (
            ("acoustic_model", "en-us"), ("language_model", "en-us.lm.bin"), ("dictionary", "cmudict-en-us.dict"),
        )}
        missing = [str(p) for p in paths.values() if not p.exists()]
        if missing:
            raise ModelLoadError(f"pocketsphinx artifact is missing {missing}")
        try:
            self.decoder = Decoder(
                hmm=str(paths["acoustic_model"]), lm=str(paths["language_model"]),
                dict=str(paths["dictionary"]), samprate=SAMPLE_RATE_HZ, loglevel="FATAL",
            )
        except (RuntimeError, ValueError) as exc:
            raise ModelLoadError(f"pocketsphinx could not load {artifact_dir}: {exc}") from exc
        self.frames_per_s = int(self.decoder.config["frate"])
        self._lock = threading.Lock()  # the decoder is one stateful search

    def transcribe_batch(self, clips: list[np.ndarray], languages: list[str | None],
                         hotwords: list[tuple[str, ...]] | None = None) -> list[Transcript]:
        # pocketsphinx has no batch API (nor a prompt: hotwords are ignored): requests are decoded one after another.
        return [self._transcribe(audio) for audio in clips]

    def _transcribe(self, audio: np.ndarray) -> Transcript:
        pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
        segments = []
        with self._lock:
            for region in speech_chunks(audio):
                self.decoder.start_utt()
                self.decoder.process_raw(pcm[region["start"] : region["end"]].tobytes(), full_utt=True)
                self.decoder.end_utt()
                hyp = self.decoder.hyp()
                text = hyp.hypstr.strip() if hyp is not None else ""
                if text:
                    offset_s = region["start"] / SAMPLE_RATE_HZ
                    words = [s for s in self.decoder.seg() if not s.word.startswith(("<", "["))]
                    start_s = offset_s + (words[0].start_frame / self.frames_per_s if words else 0.0)
                    end_s = offset_s + (words[-1].end_frame / self.frames_per_s if words else 0.0)
                    segments.append(Segment(round(start_s, 2), round(end_s, 2), text))
        return Transcript(text=" ".join(s.text for s in segments), segments=tuple(segments), language="en")


def check_language_code(language: str | None, known: frozenset[str]) -> str | None:
    """Normalise 'zh-CN' / 'ZH' to 'zh'; refuse codes no Whisper model knows."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    if language is None or language.strip().lower() in ("", "auto", "detect"):
        return None
    code = language.strip().lower().replace("_", "-").split("-")[0]
    if code not in _LANGUAGE_CODES and code not in known:
        raise InvalidInput(f"unknown language code {language!r} (use ISO 639-1 codes such as en, zh)", field="language")
    return code


def as_hub_error(exc: Exception) -> HubError:
    return exc if isinstance(exc, HubError) else HubError(f"speech recognition failed: {type(exc).__name__}: {exc}")
