"""Safe decoding of untrusted audio: the boundary where FFmpeg (PyAV) and soxr errors become hub errors.

Any container FFmpeg knows from a short allow-list (WAV, FLAC, MP3, OGG/Opus/Vorbis, MP4/M4A, WebM, AMR,
AIFF, ...) at any sample rate and channel count is decoded with PyAV, averaged to mono and resampled
to the target rate with soxr, streaming, so that a long file never sits in memory at its native rate. Durations over `max_duration_s` are refused with 413 before decoding when the
container states its duration and, for containers that lie or say nothing, as soon as the decoded audio
passes the limit.

>>> clip = decode_audio(open("call.mp3", "rb").read(), sample_rate_hz=16_000)
>>> clip.samples.dtype, clip.sample_rate_hz, round(clip.duration_s, 1)
(dtype('float32'), 16000, 8.7)
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import av
import numpy as np
import soundfile as sf
import soxr

from hub.errors import InvalidInput, PayloadTooLarge

# 30 minutes: the longest hotline call we accept in one request. Longer recordings are refused (413)
# rather than streamed: a citizen call is minutes long, and a single request holding a replica for
# an hour of decoding would starve every other caller.
DEFAULT_MAX_DURATION_S = 30 * 60.0

# Demuxers FFmpeg may use on untrusted bytes. Playlist/concat style demuxers (hls, concat, ...) that
# open other files or URLs are deliberately not in the list.
ALLOWED_DEMUXERS = "wav,w64,flac,mp3,ogg,mov,matroska,aac,amr,aiff,caf,au,rf64"


@dataclass(frozen=True)
class AudioClip:
    """Decoded mono float32 audio in [-1, 1] at `sample_rate_hz`."""

    samples: np.ndarray
    sample_rate_hz: int
    source_sample_rate_hz: int
    source_channels: int
    source_format: str

    @property
    def duration_s(self) -> float:
        return len(self.samples) / float(self.sample_rate_hz)


def decode_audio(
    data: bytes,
    *,
    sample_rate_hz: int = 16_000,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    field: str = "audio",
) -> AudioClip:
    """Decode any supported audio bytes to mono float32 at `sample_rate_hz`.

    Raises InvalidInput (400) for empty or non-audio bytes and PayloadTooLarge (413) for audio longer
    than `max_duration_s`.
    """
    if not data:
        raise InvalidInput("audio is empty", field=field)
    _refuse_truncated_wav(data, max_duration_s, field)
    try:
        container = av.open(io.BytesIO(data), mode="r", options={"format_whitelist": ALLOWED_DEMUXERS})
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise InvalidInput(
            "audio could not be decoded (expected WAV, FLAC, MP3, OGG, M4A or WebM audio)", field=field
        ) from exc
    with container:
        if not container.streams.audio:
            raise InvalidInput("the file has no audio stream", field=field)
        stream = container.streams.audio[0]
        _refuse_long_header(container, stream, max_duration_s, field)
        try:
            return _decode_stream(container, stream, sample_rate_hz, max_duration_s, field)
        except (av.FFmpegError, ValueError, RuntimeError) as exc:
            raise InvalidInput(f"audio could not be decoded: {exc}", field=field) from exc


def _refuse_long_header(container, stream, max_duration_s: float, field: str) -> None:
    # Cheap early refusal from the header; the decode loop enforces the limit again for liars.
    stated_s = None
    if stream.duration is not None and stream.time_base is not None:
        stated_s = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        stated_s = container.duration / 1_000_000.0  # AV_TIME_BASE is microseconds
    if stated_s is not None and stated_s > max_duration_s:
        raise PayloadTooLarge(_too_long(stated_s, max_duration_s), field=field)


def _refuse_truncated_wav(data: bytes, max_duration_s: float, field: str) -> None:
    """A WAV whose `data` chunk declares more than the upload holds was cut off on its way here.

    FFmpeg quietly clamps the duration to the bytes present, so a header that promises two hours over
    one second of silence would be transcribed as an empty call (200). The declared length is judged
    first (413 over the limit), then the loss (400 when over a tenth is missing). Streaming writers
    leave the size 0 or 0xFFFFFFFF: those say "unknown" and pass.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return
    byte_rate, pos = 0, 12
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if chunk == b"fmt " and size >= 12 and pos + 20 <= len(data):
            byte_rate = struct.unpack_from("<I", data, pos + 16)[0]
        if chunk == b"data":
            if size in (0, 0xFFFFFFFF) or byte_rate <= 0:
                return
            declared_s, held_s = size / byte_rate, (len(data) - pos - 8) / byte_rate
            if declared_s > max_duration_s:
                raise PayloadTooLarge(_too_long(declared_s, max_duration_s), field=field)
            if held_s < 0.9 * declared_s:
                raise InvalidInput(f"audio is truncated: the WAV header declares {declared_s:.1f} s, the upload "
                                   f"holds {held_s:.1f} s (send the whole file)", field=field)
            return
        pos += 8 + size + (size & 1)  # chunks are word-aligned


def _too_long(duration_s: float, max_duration_s: float) -> str:
    return (
        f"audio is {duration_s / 60:.1f} min long; the limit is {max_duration_s / 60:.0f} min "
        "(split the recording and send the parts)"
    )


def _decode_stream(container, stream, sample_rate_hz: int, max_duration_s: float, field: str) -> AudioClip:
    source_rate = int(stream.rate or stream.codec_context.sample_rate or 0)
    if source_rate <= 0:
        raise InvalidInput("audio stream has no sample rate", field=field)
    channels = int(stream.codec_context.channels or 1)
    # FFmpeg converts the sample format to planar float (layout and rate unchanged); channels are averaged
    # (FFmpeg's own down-mix matrix adds 5.1 channels with gains above 1 and clips); soxr changes the rate.
    to_float = av.AudioResampler(format="fltp")
    resampler = None if source_rate == sample_rate_hz else soxr.ResampleStream(
        source_rate, sample_rate_hz, 1, dtype="float32", quality="HQ"
    )
    max_source_samples = int(max_duration_s * source_rate) + source_rate  # 1 s grace for rounding
    parts: list[np.ndarray] = []
    seen = 0
    for frame in container.decode(stream):
        for planar in to_float.resample(frame):
            chunk = _mono(planar)
            seen += chunk.size
            if seen > max_source_samples:
                raise PayloadTooLarge(_too_long(seen / source_rate, max_duration_s), field=field)
            parts.append(resampler.resample_chunk(chunk) if resampler else chunk)
    for planar in to_float.resample(None):  # flush FFmpeg's resampler
        chunk = _mono(planar)
        parts.append(resampler.resample_chunk(chunk) if resampler else chunk)
    if resampler is not None:
        parts.append(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    if samples.size == 0:
        raise InvalidInput("audio contains no samples", field=field)
    if not np.all(np.isfinite(samples)):
        raise InvalidInput("audio contains NaN or infinite samples", field=field)
    np.clip(samples, -1.0, 1.0, out=samples)
    return AudioClip(
        samples=np.ascontiguousarray(samples, dtype=np.float32),
        sample_rate_hz=sample_rate_hz,
        source_sample_rate_hz=source_rate,
        source_channels=channels,
        source_format=str(container.format.name),
    )


def _mono(frame) -> np.ndarray:
    planes = frame.to_ndarray()  # (channels, samples) for planar float
    return (planes[0] if planes.shape[0] == 1 else planes.mean(axis=0)).astype(np.float32, copy=False)


def resample(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Resample mono float32 audio with soxr (no-op when the rates match)."""
    if from_hz == to_hz:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples.astype(np.float32, copy=False), from_hz, to_hz, quality="HQ")


# Encoders for synthesised audio (libsndfile through soundfile): format -> (container, subtype, media type).
_ENCODERS = {
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
    "ogg": ("OGG", "VORBIS", "audio/ogg"),
}
MEDIA_TYPES = {fmt: media for fmt, (_, _, media) in _ENCODERS.items()}
# Rates every encoder above takes (MPEG audio allows only these).
ENCODER_RATES_HZ = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def encode_audio(samples: np.ndarray, sample_rate_hz: int, fmt: str) -> bytes:
    """Encode mono float32 audio as `wav` (16-bit PCM), `mp3` or `ogg` (Vorbis) at `sample_rate_hz`."""
    if fmt not in _ENCODERS:
        raise InvalidInput(f"unknown audio format {fmt!r}; use wav, mp3 or ogg", field="format")
    if sample_rate_hz not in ENCODER_RATES_HZ:
        raise InvalidInput(f"sample rate {sample_rate_hz} Hz is not one of {ENCODER_RATES_HZ}", field="sample_rate_hz")
    container, subtype, _ = _ENCODERS[fmt]
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0), sample_rate_hz,
             format=container, subtype=subtype)
    return buf.getvalue()
