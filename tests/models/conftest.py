"""What the speech tests share: Whisper base (the `listen` default) to hear `speak`'s output back."""

from __future__ import annotations

import pytest

from hub.contract import ModelInfo, run_batch
from models.asr import SpeechRecognizer
from models.asr import prepare_default as prepare_listen
from models.tts import SpeakRequest, SpeakResponse, SpeechSynthesizer


@pytest.fixture(scope="module")
def asr(tmp_path_factory, shared_dir) -> SpeechRecognizer:
    out = tmp_path_factory.mktemp("whisper-base")
    prepare_listen(shared_dir, out)
    recognizer = SpeechRecognizer()
    recognizer.load(out, "cpu")
    return recognizer


def speak_with(tts: SpeechSynthesizer, info: ModelInfo, **fields) -> SpeakResponse:
    result = run_batch(tts, [SpeakRequest(**fields)], info)[0]
    assert not isinstance(result, Exception), result
    return result
