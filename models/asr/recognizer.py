"""Capability `listen`: speech to text.

Request: audio bytes (WAV/FLAC/MP3/OGG/M4A/WebM, any rate and channel count; base64 in JSON or a multipart
upload in field `audio`) and an optional ISO 639-1 `language`. Response: text, timed segments, language
and the clip's duration. Audio longer than 30 minutes is refused with 413 (see `models.audio`).

The artifact's `hub.json` picks the backend: `"format": "ctranslate2-whisper"` (default; any CTranslate2
Whisper model directory — English-only like the embedded tiny.en, or multilingual, which detects the
language) or `"format": "pocketsphinx"` (light English fallback). A plain CTranslate2 Whisper directory
without `hub.json` loads too, so ops can register a converted model as it is.

The default model is Whisper base (multilingual): it detects the language, or takes `language`.
Mandarin comes back in Simplified characters with Chinese punctuation (`models.asr.zh_text`), decoded
with the artifact's prompt and domain hotwords (`hotwords.json`: departments, districts, category terms)
plus any `hotwords` of the request. Segments carry start/end times on the clip's timeline, and
`avg_logprob` says how sure the decoder was (the hotline hands a call below its threshold to a person).

With an English-only model (the registered alternative tiny.en), a request with `language="zh"` — or
audio that the model cannot read as English (mean token log-probability under `min_english_logprob`,
-0.6 by default, or a looping decoder) — is answered 422 telling ops how to register a multilingual
model. `language="en"` forces English and skips that check. That guess is weak (a synthetic English voice
can score as low as Mandarin does); the multilingual default detects the language instead and has no
such gate.

>>> asr = SpeechRecognizer(); asr.load(Path("artifact"), "cpu")
>>> asr.predict_batch([ListenRequest(audio=open("call.wav", "rb").read())])[0].text
'It was the first great sorrow of his life. ...'
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar

import numpy as np
import soundfile as sf
from pydantic import Field, StringConstraints, field_validator

from hub.contract import Blob, Response, WireModel, prepare_each
from hub.errors import HubError, ModelLoadError, Unprocessable
from models.asr.backends import (
    SAMPLE_RATE_HZ,
    LanguagePrompt,
    SphinxBackend,
    WhisperBackend,
    WhisperOptions,
    as_hub_error,
    check_language_code,
)
from models.asr.hotwords import read_hotwords
from models.audio import DEFAULT_MAX_DURATION_S, decode_audio

FORMAT_WHISPER = "ctranslate2-whisper"
FORMAT_SPHINX = "pocketsphinx"
REGISTER_HINT = "register one with `hub models register listen <dir>` (a multilingual CTranslate2 Whisper model)"
MAX_COMPRESSION_RATIO = 2.4
_LANGUAGE_NAMES = {"zh": "Chinese", "yue": "Cantonese", "en": "English", "ja": "Japanese", "ko": "Korean"}


class ListenRequest(WireModel):
    audio: Blob
    language: str | None = None  # ISO 639-1 ("en", "zh"); None: detect (multilingual) or English
    # Words this call is likely to contain (names, streets), read before the model's own domain hotwords.
    hotwords: list[Annotated[str, StringConstraints(max_length=40)]] | None = Field(None, max_length=50)

    @field_validator("hotwords", mode="before")
    @classmethod
    def _split_form_field(cls, value):
        # a multipart form or query string carries one text: "幸福路,凤凰街道" or "幸福路 凤凰街道"
        if isinstance(value, str):
            return [w for w in re.split(r"[,，、\s]+", value) if w]
        return value


class SpeechSegment(WireModel):
    start_s: float
    end_s: float
    text: str


class ListenResponse(Response):
    text: str
    segments: list[SpeechSegment]
    language: str
    duration_s: float
    avg_logprob: float | None = None  # mean token log-probability (Whisper): near 0 sure, below -1 unsure


@dataclass(frozen=True)
class ListenSettings:
    """Per-artifact settings read from hub.json metadata (all optional)."""

    model_name: str = "whisper"
    max_duration_s: float = DEFAULT_MAX_DURATION_S
    # tiny.en: LibriSpeech about -0.3, the shared Mandarin clip -0.76, espeak-ng English -0.36..-0.82.
    # The ranges overlap, which is why the default model is multilingual and detects the language.
    min_english_logprob: float = -0.6

    @classmethod
    def from_metadata(cls, meta: dict) -> ListenSettings:
        return cls(
            model_name=str(meta.get("model_name", cls.model_name)),
            max_duration_s=float(meta.get("max_duration_s", cls.max_duration_s)),
            min_english_logprob=float(meta.get("min_english_logprob", cls.min_english_logprob)),
        )


def read_hub_json(artifact_dir: Path) -> tuple[str, dict]:
    """(format, metadata) of a listen artifact; a bare CTranslate2 Whisper directory counts as one."""
    path = artifact_dir / "hub.json"
    if path.exists():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"unreadable {path}: {exc}") from exc
        if info.get("capability", "listen") != "listen":
            raise ModelLoadError(f"{path} is for capability {info.get('capability')!r}, not 'listen'")
        return str(info.get("format", FORMAT_WHISPER)), dict(info.get("metadata") or {})
    if (artifact_dir / "model.bin").exists() and (artifact_dir / "config.json").exists():
        return FORMAT_WHISPER, {"model_name": artifact_dir.name}
    raise ModelLoadError(f"{artifact_dir} has neither hub.json nor a CTranslate2 Whisper model (model.bin)")


class SpeechRecognizer:
    """Speech recognition over Whisper (faster-whisper) or pocketsphinx, chosen by the artifact.

    >>> asr = SpeechRecognizer(); asr.load(Path("artifact"), "cpu")
    >>> [r.language for r in asr.predict_batch([ListenRequest(audio=wav1), ListenRequest(audio=wav2)])]
    ['en', 'en']
    """

    name: ClassVar[str] = "listen"
    request_type: ClassVar[type] = ListenRequest
    response_type: ClassVar[type] = ListenResponse
    upload_field: ClassVar[str] = "audio"

    def __init__(self) -> None:
        self.backend: WhisperBackend | SphinxBackend | None = None
        self.settings = ListenSettings()
        self.artifact_dir: Path | None = None

    def load(self, artifact_dir: Path, device: str) -> None:
        artifact_dir = Path(artifact_dir)
        fmt, meta = read_hub_json(artifact_dir)
        self.settings = ListenSettings.from_metadata(meta)
        if fmt == FORMAT_WHISPER:
            model_dir = artifact_dir / str(meta.get("model_subdir", "."))
            prompts = {lang: LanguagePrompt(prompt=p.get("prompt"), hotwords=tuple(p.get("hotwords", ())),
                                            max_hotword_tokens=int(p.get("max_tokens", 160)))
                       for lang, p in read_hotwords(artifact_dir).items()}
            options = WhisperOptions(
                beam_size=int(meta.get("beam_size", 5)),
                batch_size=int(meta.get("batch_size", 8)),
                compute_type=str(meta.get("compute_type", "auto")),
                cpu_threads=int(meta.get("cpu_threads", 0)),
                prompts=prompts,
            )
            self.backend = WhisperBackend(model_dir, device, options)
        elif fmt == FORMAT_SPHINX:
            self.backend = SphinxBackend(artifact_dir, meta)
        else:
            raise ModelLoadError(f"unknown listen artifact format {fmt!r} (expected {FORMAT_WHISPER} or {FORMAT_SPHINX})")
        self.artifact_dir = artifact_dir

    def sample_request(self) -> ListenRequest:
        sample = self.artifact_dir / "sample.wav" if self.artifact_dir else None
        if sample is not None and sample.exists():
            return ListenRequest(audio=sample.read_bytes(), language="en")
        # No bundled clip (a user's bare model directory): one second of a quiet tone.
        t = np.arange(SAMPLE_RATE_HZ, dtype=np.float32) / SAMPLE_RATE_HZ
        buf = io.BytesIO()
        sf.write(buf, 0.1 * np.sin(2 * np.pi * 440.0 * t), SAMPLE_RATE_HZ, format="WAV", subtype="PCM_16")
        return ListenRequest(audio=buf.getvalue(), language="en")

    @property
    def english_only(self) -> bool:
        return self.backend is not None and not self.backend.multilingual

    def predict_batch(self, requests: Sequence[ListenRequest]) -> list[ListenResponse | HubError]:
        if self.backend is None:
            raise ModelLoadError("listen: load() was not called")

        def prepare(request: ListenRequest) -> tuple[np.ndarray, str | None, tuple[str, ...]]:
            language = check_language_code(request.language, self.backend.languages)
            self._refuse_unknown_language(language)
            clip = decode_audio(request.audio, sample_rate_hz=SAMPLE_RATE_HZ, max_duration_s=self.settings.max_duration_s)
            return clip.samples, language, tuple(w.strip() for w in request.hotwords or () if w.strip())

        batch = prepare_each(requests, prepare)
        results = batch.out
        todo = [(i, *item) for i, item in zip(batch.slots, batch.items, strict=True)]
        if todo:
            try:
                transcripts = self.backend.transcribe_batch([t[1] for t in todo], [t[2] for t in todo],
                                                            [t[3] for t in todo])
            except Exception as exc:  # a backend failure fails the whole batch, translated at this boundary
                raise as_hub_error(exc) from exc
            for (i, audio, language, _), transcript in zip(todo, transcripts, strict=True):
                try:
                    self._refuse_non_english(transcript, language)
                    duration_s = round(len(audio) / SAMPLE_RATE_HZ, 3)
                    results[i] = ListenResponse(
                        text=transcript.text,
                        # a decoder's timestamp can overshoot the end of a short clip: keep it inside
                        segments=[SpeechSegment(start_s=min(s.start_s, duration_s), end_s=min(s.end_s, duration_s),
                                                text=s.text) for s in transcript.segments],
                        language=transcript.language,
                        duration_s=duration_s,
                        avg_logprob=None if transcript.avg_logprob is None else round(transcript.avg_logprob, 4),
                    )
                except HubError as exc:
                    results[i] = exc
        return [r if r is not None else HubError("listen: no result") for r in results]

    def _refuse_unknown_language(self, language: str | None) -> None:
        if language is None or language in self.backend.languages:
            return
        name = _LANGUAGE_NAMES.get(language, f"'{language}'")
        raise Unprocessable(
            f"no {name} ASR model registered: the serving listen model ({self.settings.model_name}) knows only "
            f"{', '.join(sorted(self.backend.languages))}; {REGISTER_HINT}",
            field="language",
        )

    def _refuse_non_english(self, transcript, requested: str | None) -> None:
        # An English-only model turns any speech into English-sounding words; its confidence is the one
        # signal that the caller spoke another language: Mandarin scores about -0.8 (English about -0.3),
        # or the decoder loops on repeated tokens (gzip compression ratio over 2.4, Whisper's own rule).
        if requested is not None or not self.english_only or transcript.avg_logprob is None:
            return
        low_confidence = transcript.avg_logprob < self.settings.min_english_logprob
        looping = transcript.max_compression_ratio > MAX_COMPRESSION_RATIO
        if low_confidence or looping:
            why = (
                f"mean log-probability {transcript.avg_logprob:.2f} < {self.settings.min_english_logprob:.2f}"
                if low_confidence
                else f"the decoder looped, compression ratio {transcript.max_compression_ratio:.1f}"
            )
            raise Unprocessable(
                f"the audio does not sound like English ({why}) and the serving listen model "
                f"({self.settings.model_name}) is English-only: no Chinese ASR model registered; "
                f"{REGISTER_HINT}, or send language=en to force English",
                field="audio",
            )
