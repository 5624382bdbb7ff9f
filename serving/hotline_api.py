"""`POST /v1/hotline/call`: the hotline voice pipeline behind the ingress, composed from the `listen`,
`reason` and `speak` deployment handles (no HTTP calls to the hub itself).

The body is JSON (`{"audio": "<base64>", "language": ..., "voice": ..., "format": ...}`), a multipart
upload (file in field `audio`, other fields as form fields) or raw audio bytes with the other fields as
query parameters — the same three forms as `POST /v1/listen`.

    curl -F audio=@call.wav http://127.0.0.1:8000/v1/hotline/call
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter, Request

from hub.contract import validate_as
from hub.errors import InvalidInput
from pipelines.hotline import HotlineCallRequest, HotlineConfig, HotlineStages, handle_call
from serving.body import parse_json
from serving.calls import call, current_config, documented_body, read_body, upload_fields
from serving.handles import get_handle

router = APIRouter(tags=["pipelines"])

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024


@cache
def hotline_config() -> HotlineConfig:
    return HotlineConfig.load()


def _serving_config() -> Any:
    try:
        return current_config()
    except KeyError:  # the ingress was not constructed (a bare app in a test): defaults
        return None


def handle_stages() -> HotlineStages:
    """Stages over the Ray Serve deployment handles registered by the ingress; replies in a language
    that `hotline.speak` of the serving config names are spoken by that deployment."""
    cfg = _serving_config()

    def stage(name: str):
        timeout_s = cfg.capabilities[name].timeout_s if cfg and name in cfg.capabilities else DEFAULT_TIMEOUT_S

        async def run(payload: dict) -> Any:
            return await call(get_handle(name).predict.remote(payload), timeout_s)

        return run

    by_language = {language: stage(name) for language, name in cfg.hotline.speak.items()} if cfg else {}
    return HotlineStages(listen=stage("listen"), reason=stage("reason"), speak=stage("speak"),
                         speak_by_language=by_language)


async def _call_payload(request: Request) -> dict:
    cfg = _serving_config()
    body = await read_body(request, cfg.http.max_body_bytes if cfg else DEFAULT_MAX_BODY_BYTES)
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type == "application/json":
        payload = parse_json(body) if body else None
        if not isinstance(payload, dict):
            raise InvalidInput("send a JSON object with an `audio` field (base64)")
        return payload
    return await upload_fields(request, body, "audio", dict(request.query_params))


@router.post("/v1/hotline/call", openapi_extra=documented_body(HotlineCallRequest, multipart=True))
async def hotline_call(request: Request) -> dict:
    """A recorded citizen call in; transcript, category, department, similar cases, reply text and reply
    audio (base64) out, with the model version of each stage."""
    payload = await _call_payload(request)
    call_request = validate_as(HotlineCallRequest, payload)
    response = await handle_call(call_request, handle_stages(), hotline_config())
    return response.model_dump(mode="json")
