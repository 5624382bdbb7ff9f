"""models.audio: decoding untrusted audio of any format/rate/channels, limits, and encoding."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest
import soundfile as sf

from hub.errors import InvalidInput, PayloadTooLarge
from models.audio import ENCODER_RATES_HZ, MEDIA_TYPES, _decode_stream, decode_audio, encode_audio


def tone(seconds: float, rate: int, channels: int = 1, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono] * channels, axis=1)


def soundfile_bytes(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def pyav_bytes(samples: np.ndarray, rate: int, container: str, codec: str) -> bytes:
    """Encode mono float32 with FFmpeg (μ-law WAV, MP3, Opus...)."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        step = 1152
        for start in range(0, len(pcm), step):
            frame = av.AudioFrame.from_ndarray(pcm[start : start + step].reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "make", "source_rate", "channels"),
    [
        ("wav 16 kHz mono", lambda: soundfile_bytes(tone(2.0, 16000), 16000, "WAV", "PCM_16"), 16000, 1),
        ("wav 44.1 kHz stereo", lambda: soundfile_bytes(tone(2.0, 44100, 2), 44100, "WAV", "PCM_24"), 44100, 2),
        ("flac 48 kHz 6 ch", lambda: soundfile_bytes(tone(2.0, 48000, 6), 48000, "FLAC"), 48000, 6),
        ("ogg vorbis 22.05 kHz", lambda: soundfile_bytes(tone(2.0, 22050), 22050, "OGG", "VORBIS"), 22050, 1),
        ("mp3 24 kHz", lambda: pyav_bytes(tone(2.0, 24000), 24000, "mp3", "libmp3lame"), 24000, 1),
        ("μ-law wav 8 kHz", lambda: pyav_bytes(tone(2.0, 8000), 8000, "wav", "pcm_mulaw"), 8000, 1),
        ("opus in ogg", lambda: pyav_bytes(tone(2.0, 48000), 48000, "ogg", "libopus"), 48000, 1),
    ],
)
def test_decode_any_format_to_16k_mono(name, make, source_rate, channels):
    clip = decode_audio(make(), sample_rate_hz=16000)
    assert clip.sample_rate_hz == 16000
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert clip.source_sample_rate_hz == source_rate
    assert clip.source_channels == channels
    assert clip.duration_s == pytest.approx(2.0, abs=0.08)  # codec padding (MP3, Opus) is a few ms
    rms = float(np.sqrt(np.mean(clip.samples**2)))
    assert 0.1 < rms < 0.4, f"{name}: a 0.3-amplitude tone has RMS ~0.21, got {rms}"


def test_resampling_keeps_the_pitch():
    clip = decode_audio(soundfile_bytes(tone(1.0, 44100, hz=1000.0), 44100, "WAV"), sample_rate_hz=16000)
    spectrum = np.abs(np.fft.rfft(clip.samples))
    peak_hz = np.argmax(spectrum) * 16000 / len(clip.samples)
    assert peak_hz == pytest.approx(1000.0, abs=5.0)


def two_hour_wav() -> bytes:
    # 2 h of 8 kHz 8-bit silence: 57.6 MB, a real file whose header states its length.
    return soundfile_bytes(np.zeros(2 * 3600 * 8000, dtype=np.float32), 8000, "WAV", "PCM_U8")


def wav_declaring(data_size: int, held_s: float, rate: int = 16000) -> bytes:
    """A 16-bit mono WAV whose `data` chunk declares `data_size` bytes over `held_s` of real tone."""
    wav = soundfile_bytes(tone(held_s, rate), rate, "WAV", "PCM_16")
    at = wav.index(b"data") + 4
    return wav[:at] + struct.pack("<I", data_size) + wav[at + 4:]


@pytest.mark.parametrize(
    ("name", "data", "limit_s", "error", "message"),
    [
        ("empty", lambda: b"", 1800, InvalidInput, "empty"),
        ("text", lambda: b"this is not audio at all " * 40, 1800, InvalidInput, "could not be decoded"),
        ("png image", lambda: bytes.fromhex("89504e470d0a1a0a") + b"\0" * 200, 1800, InvalidInput, "could not be decoded"),
        ("json", lambda: b'{"audio": "hello"}', 1800, InvalidInput, "could not be decoded"),
        ("truncated wav header", lambda: soundfile_bytes(tone(1.0, 16000), 16000, "WAV")[:30], 1800, InvalidInput, ""),
        ("wav with no samples", lambda: soundfile_bytes(np.zeros(0, np.float32), 16000, "WAV"), 1800, InvalidInput, ""),
        ("2-hour recording", two_hour_wav, 1800, PayloadTooLarge, "the limit is 30 min"),
        ("2-hour header over 1 s", lambda: wav_declaring(7200 * 32000, 1.0), 1800, PayloadTooLarge, "the limit is 30 min"),
        ("10 s header over 2 s", lambda: wav_declaring(10 * 32000, 2.0), 1800, InvalidInput, "truncated"),
        ("over a small limit", lambda: soundfile_bytes(tone(3.0, 16000), 16000, "WAV"), 2.0, PayloadTooLarge, "limit"),
    ],
)
def test_bad_audio_is_refused_clearly(name, data, limit_s, error, message):
    with pytest.raises(error) as info:
        decode_audio(data(), max_duration_s=limit_s)
    assert message in str(info.value)
    assert info.value.field == "audio"


@pytest.mark.parametrize("data_size", [0, 0xFFFFFFFF, 2 * 32000 - 64])
def test_streamed_or_padded_wav_sizes_still_decode(data_size):
    # Streaming writers leave the size unknown (0 or 0xFFFFFFFF); a few bytes short is not a lost upload.
    assert decode_audio(wav_declaring(data_size, 2.0)).duration_s == pytest.approx(2.0, abs=0.01)


def test_length_limit_holds_in_the_decode_loop():
    # A header can lie or say nothing: the decode loop itself stops at the limit (header check skipped here).
    wav = soundfile_bytes(tone(6.0, 16000), 16000, "WAV")
    with av.open(io.BytesIO(wav)) as container, pytest.raises(PayloadTooLarge):
        _decode_stream(container, container.streams.audio[0], 16000, 3.0, "audio")
    with av.open(io.BytesIO(wav)) as container:
        assert _decode_stream(container, container.streams.audio[0], 16000, 10.0, "audio").duration_s == 6.0


@pytest.mark.parametrize("fmt", ["wav", "mp3", "ogg"])
@pytest.mark.parametrize("rate", [8000, 22050])
def test_encode_round_trip(fmt, rate):
    data = encode_audio(tone(1.5, rate), rate, fmt)
    clip = decode_audio(data, sample_rate_hz=rate)
    assert clip.source_sample_rate_hz == rate
    assert clip.duration_s == pytest.approx(1.5, abs=0.08)
    assert MEDIA_TYPES[fmt].startswith("audio/")


@pytest.mark.parametrize(("fmt", "rate"), [("flac", 16000), ("wav", 10000)])
def test_encode_refuses_unknown_format_or_rate(fmt, rate):
    assert rate in ENCODER_RATES_HZ or rate == 10000
    with pytest.raises(InvalidInput):
        encode_audio(tone(0.5, 16000), rate, fmt)
