"""The 12345 hotline voice pipeline: a recorded call -> `listen` -> `reason` -> a reply text from a template
per department/category -> `speak`.

The pipeline is plain async code over three stage callables (`payload dict -> awaitable response model`),
so the same code runs behind Ray Serve deployment handles (`serving/hotline_api.py`), in-process for the
CLI (`local_stages(serving.local.predict_local)`) and in tests. Stage errors (a 400 for a corrupt file, a
422 for Mandarin on an English-only `listen` model) propagate unchanged.

A call is marked for a human operator (`needs_review`, with `review_reasons`) instead of being answered
as routed when the transcript is unsure (`listen`'s mean log-probability under
`review.min_transcript_avg_logprob`), when `reason` is unsure (its own threshold, or
`review.min_category_confidence` of configs/hotline.yaml), or when `reason` refuses the text.

>>> stages = local_stages(predict_local)         # or handle_stages() inside the ingress
>>> reply = await handle_call(HotlineCallRequest(audio=wav), stages, HotlineConfig.load())
>>> reply.category, reply.department, reply.models["listen"].version
('城乡建设', '市住房和城乡建设局', '1')
"""

from __future__ import annotations

import asyncio
import string
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from hub.contract import Blob, ModelInfo, WireModel, validate_as
from hub.errors import HubError, Unprocessable
from hub.yamlconfig import read_yaml_mapping

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "hotline.yaml"
Stage = Callable[[dict], Awaitable[Any]]
_PLACEHOLDERS = {"category", "department", "hotline"}


# ---- configuration ------------------------------------------------------------------------------------

class _Strict(WireModel):
    model_config = ConfigDict(frozen=True)  # merged with WireModel's: unknown keys refused


class LanguageTemplates(_Strict):
    voice: str | None = None
    default: str
    needs_review: str
    categories: dict[str, str] = {}
    departments: dict[str, str] = {}

    @model_validator(mode="after")
    def _known_placeholders(self) -> LanguageTemplates:
        for template in [self.default, self.needs_review, *self.categories.values(), *self.departments.values()]:
            names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
            unknown = names - _PLACEHOLDERS
            if unknown:
                raise ValueError(f"template uses unknown placeholders {sorted(unknown)}: {template!r}")
        return self


class ReviewThresholds(_Strict):
    """When a call goes to a human operator instead of the automatic reply."""

    # Whisper's mean token log-probability: clear speech -0.1..-0.4; below about -1 the words are guesses.
    min_transcript_avg_logprob: float = Field(-1.0, le=0.0)
    # The calibrated top probability of `reason`; 0 leaves the decision to reason's own needs_review.
    min_category_confidence: float = Field(0.0, ge=0.0, le=1.0)


class HotlineConfig(_Strict):
    """Reply templates, names and review thresholds (configs/hotline.yaml)."""

    hotline: str = "12345"
    review: ReviewThresholds = ReviewThresholds()
    fallback_language: str = "zh"
    max_similar_cases: int = Field(3, ge=0, le=20)
    languages: dict[str, LanguageTemplates]
    category_names_en: dict[str, str] = {}
    department_names_en: dict[str, str] = {}
    unknown_department_en: str = "the responsible department"

    @model_validator(mode="after")
    def _fallback_exists(self) -> HotlineConfig:
        if self.fallback_language not in self.languages:
            raise ValueError(f"fallback_language {self.fallback_language!r} has no templates")
        return self

    @classmethod
    def load(cls, path: Path | None = None) -> HotlineConfig:
        path = Path(path or DEFAULT_CONFIG)
        return validate_as(cls, read_yaml_mapping(path, "hotline config"), f"invalid hotline config {path}")


# ---- wire types ---------------------------------------------------------------------------------------

class HotlineCallRequest(WireModel):
    audio: Blob
    language: str | None = None  # passed to `listen`; None: detect / the model's language
    voice: str | None = None  # reply voice; None: the template language's voice
    format: Literal["wav", "mp3", "ogg"] = "wav"  # reply audio format


class SimilarCase(WireModel):
    model_config = ConfigDict(extra="allow")  # whatever `reason` says about a case, passed through


class HotlineCallResponse(WireModel):
    transcript: str
    language: str
    duration_s: float
    transcript_avg_logprob: float | None  # how sure `listen` was of the words
    category: str
    confidence: float | None
    department: str
    needs_review: bool
    review_reasons: list[str]  # why an operator should look (from reason, or "not_classified: ...")
    similar_cases: list[SimilarCase]
    reply_text: str
    reply_audio: Blob
    reply_media_type: str
    reply_sample_rate_hz: int
    reply_duration_s: float
    models: dict[str, ModelInfo | None]  # stage -> the model version that answered


# ---- the pipeline -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HotlineStages:
    listen: Stage
    reason: Stage
    speak: Stage
    # reply language -> the stage that speaks it (e.g. a neural Mandarin voice); others use `speak`
    speak_by_language: Mapping[str, Stage] = field(default_factory=dict)

    def speak_for(self, language: str) -> Stage:
        return self.speak_by_language.get(language, self.speak)


@dataclass(frozen=True)
class Routing:
    """What the pipeline needs from a `reason` answer (models.textcls.ReasonResponse)."""

    category: str
    confidence: float | None
    department: str
    needs_review: bool
    similar_cases: tuple[dict, ...]
    review_reasons: tuple[str, ...] = ()


def read_routing(reason_response: Any) -> Routing:
    """Map a `reason` response to the routing the reply needs."""
    data = reason_response.model_dump(mode="json") if hasattr(reason_response, "model_dump") else dict(reason_response)
    confidence = data.get("confidence")
    return Routing(
        category=str(data.get("category") or ""), confidence=None if confidence is None else float(confidence),
        department=str(data.get("department") or ""), needs_review=bool(data.get("needs_review", False)),
        similar_cases=tuple(data.get("similar_cases") or ()), review_reasons=tuple(data.get("review_reasons") or ()),
    )


def unrouted(reason: str) -> Routing:
    """A call `reason` would not classify (e.g. it refuses non-Chinese text): a human routes it."""
    return Routing(category="", confidence=None, department="", needs_review=True, similar_cases=(),
                   review_reasons=(reason,))


def apply_review(routing: Routing, transcript_avg_logprob: float | None, review: ReviewThresholds) -> Routing:
    """Add the pipeline's own reasons for a human to look at the call to those of `reason`."""
    reasons = list(routing.review_reasons)
    if transcript_avg_logprob is not None and transcript_avg_logprob < review.min_transcript_avg_logprob:
        reasons.append(f"low_transcript_confidence: {transcript_avg_logprob:.2f} < {review.min_transcript_avg_logprob}")
    if routing.confidence is not None and routing.confidence < review.min_category_confidence:
        reasons.append(f"low_category_confidence: {routing.confidence:.2f} < {review.min_category_confidence}")
    reasons = list(dict.fromkeys(reasons))
    if reasons == list(routing.review_reasons):
        return routing
    return replace(routing, needs_review=True, review_reasons=tuple(reasons))


def reply_language(config: HotlineConfig, language: str) -> str:
    """The language the reply is written (and spoken) in: the caller's, if it has templates."""
    return language if language in config.languages else config.fallback_language


def render_reply(config: HotlineConfig, language: str, routing: Routing) -> tuple[str, str | None]:
    """(reply text, voice) for a routed call in the caller's language."""
    lang = reply_language(config, language)
    templates = config.languages[lang]
    if routing.needs_review or not routing.category:
        template = templates.needs_review
    else:
        template = (templates.departments.get(routing.department)
                    or templates.categories.get(routing.category) or templates.default)
    category, department = routing.category, routing.department or "相关部门"
    if lang != "zh":
        category = config.category_names_en.get(routing.category, "your request")
        department = config.department_names_en.get(routing.department, config.unknown_department_en)
    return template.format(category=category, department=department, hotline=config.hotline), templates.voice


async def handle_call(call: HotlineCallRequest, stages: HotlineStages, config: HotlineConfig) -> HotlineCallResponse:
    """Run one call through listen -> reason -> reply template -> speak."""
    heard = await stages.listen({"audio": call.audio, "language": call.language})
    transcript = heard.text.strip()
    if not transcript:
        raise Unprocessable("no speech was recognised in the call", field="audio")
    try:
        reasoned = await stages.reason({"text": transcript})
        routing = read_routing(reasoned)
    except HubError as exc:
        if not 400 <= exc.status_code < 500:
            raise
        # The classifier refused this text (too short, not Chinese, ...): the caller still gets an
        # answer, and an operator routes the case by hand.
        reasoned, routing = None, unrouted(f"not_classified: {exc.message}")
    heard_logprob = getattr(heard, "avg_logprob", None)
    routing = apply_review(routing, heard_logprob, config.review)
    reply_text, template_voice = render_reply(config, heard.language, routing)
    speak = stages.speak_for(reply_language(config, heard.language))
    spoken = await speak({"text": reply_text, "voice": call.voice or template_voice, "format": call.format})
    return HotlineCallResponse(
        transcript=transcript, language=heard.language, duration_s=heard.duration_s,
        transcript_avg_logprob=heard_logprob,
        category=routing.category, confidence=routing.confidence, department=routing.department,
        needs_review=routing.needs_review, review_reasons=list(routing.review_reasons),
        similar_cases=[SimilarCase(**c) for c in routing.similar_cases[: config.max_similar_cases]],
        reply_text=reply_text, reply_audio=spoken.audio, reply_media_type=spoken.media_type,
        reply_sample_rate_hz=spoken.sample_rate_hz, reply_duration_s=spoken.duration_s,
        models={"listen": heard.model, "reason": getattr(reasoned, "model", None), "speak": spoken.model},
    )


# ---- stage factories ----------------------------------------------------------------------------------

def capability_stage(capability: Any, info: ModelInfo) -> Stage:
    """A stage over an already loaded capability in this process (a batch of one, in a worker thread)."""
    from hub.contract import run_batch, unwrap

    async def run(payload: dict) -> Any:
        request = validate_as(capability.request_type, payload, capability.name)
        return unwrap((await asyncio.to_thread(run_batch, capability, [request], info))[0])

    return run


def local_stages(predict: Callable[[str, dict], Any]) -> HotlineStages:
    """Stages over a blocking `predict(capability, payload) -> response` run in worker threads: the CLI
    (`hub hotline AUDIO`) passes `serving.local.predict_local`, which runs each champion in this process."""

    def stage(name: str) -> Stage:
        async def run(payload: dict) -> Any:
            return await asyncio.to_thread(predict, name, payload)

        return run

    return HotlineStages(listen=stage("listen"), reason=stage("reason"), speak=stage("speak"))
