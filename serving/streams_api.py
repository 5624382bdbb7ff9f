"""HTTP routes of the stream pipeline, included by the ingress (`serving/ingress.py`).

    POST   /v1/streams                      add a camera (CameraSpec JSON: url, zones, rules, ...)
    GET    /v1/streams                      all cameras with state, fps, drops
    GET    /v1/streams/{camera_id}          one camera
    DELETE /v1/streams/{camera_id}          stop and remove a camera
    GET    /v1/events?camera_id=&rule=&since=&limit=    stored events, newest first
    GET    /v1/events/stream?camera_id=&rule=&after_seq=  live feed (Server-Sent Events)
    GET    /v1/events/{event_id}/snapshot.jpg            the JPEG with the box drawn
    GET    /v1/events/deadletters?url=&limit=             webhook deliveries that were given up
    POST   /v1/events/deadletters/replay                  send them again: {"ids": [..]} or {"url": ..} or {}

`since` is a Unix time in seconds or an ISO-8601 time; SSE resumes from `Last-Event-ID`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import Field, StrictInt

from hub.contract import WireModel, validate_as
from hub.errors import InvalidInput
from pipelines.stream_config import CameraSpec
from serving.body import parse_json
from serving.calls import call, documented_body
from serving.handles import get_handle

router = APIRouter(prefix="/v1", tags=["streams"])
TIMEOUT_S = 120.0  # adding a camera may load a detector first


async def _call(response: Any, timeout_s: float = TIMEOUT_S) -> Any:
    return await call(response, timeout_s)


def _streams():
    return get_handle("streams")


def parse_since(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidInput("since must be Unix seconds or an ISO-8601 time", field="since") from None


@router.post("/streams", openapi_extra=documented_body(CameraSpec))
async def add_stream(request: Request) -> Any:
    """Add a camera at run time; body: `{camera_id, url, analysis_fps, zones, rules, classes, webhooks}`."""
    payload = parse_json(await request.body())
    if not isinstance(payload, dict):
        raise InvalidInput("body must be a JSON object describing the camera")
    return await _call(_streams().add_stream.remote(payload))


@router.get("/streams")
async def list_streams() -> Any:
    """Every camera (state `over_capacity` and `rate_scale` when the box is full) and the capacity summary."""
    handle = _streams()
    return {"streams": await _call(handle.list_streams.remote()), "capacity": await _call(handle.capacity.remote())}


@router.get("/streams/{camera_id}")
async def get_stream(camera_id: str) -> Any:
    return await _call(_streams().get_stream.remote(camera_id))


@router.delete("/streams/{camera_id}")
async def remove_stream(camera_id: str) -> Any:
    return await _call(_streams().remove_stream.remote(camera_id))


@router.get("/events")
async def list_events(camera_id: str | None = None, rule: str | None = None, since: str | None = None,
                      limit: int = 100) -> Any:
    if not 1 <= limit <= 10_000:
        raise InvalidInput("limit must be 1..10000", field="limit")
    events = await _call(_streams().list_events.remote(camera_id, rule, parse_since(since), limit))
    return {"events": events}


@router.get("/events/deadletters")
async def dead_letters(url: str | None = None, limit: int = 100) -> Any:
    """Webhook deliveries that were given up (a final 4xx, or every attempt failed), oldest first."""
    if not 1 <= limit <= 10_000:
        raise InvalidInput("limit must be 1..10000", field="limit")
    return {"dead_letters": await _call(_streams().dead_letters.remote(url, limit))}


SQLITE_MAX_INT = 2**63 - 1


class ReplayRequest(WireModel):
    """Which dead letters to queue again: by delivery id, by receiver URL, or (neither) all."""

    # delivery ids are SQLite row ids: a bigger int cannot name one (and SQLite cannot bind it)
    ids: list[Annotated[StrictInt, Field(ge=1, le=SQLITE_MAX_INT)]] | None = Field(None, max_length=10_000)
    url: str | None = Field(None, max_length=2048)


@router.post("/events/deadletters/replay", openapi_extra=documented_body(ReplayRequest, required=False))
async def replay_dead_letters(request: Request) -> Any:
    """Queue dead letters again: `{"ids": [3, 4]}`, `{"url": "https://ops/hook"}`, or `{}` for all."""
    body = validate_as(ReplayRequest, parse_json(await request.body() or b"{}"))
    return await _call(_streams().replay.remote(body.ids, body.url))


@router.get("/events/stream")
async def event_stream(request: Request, camera_id: str | None = None, rule: str | None = None,
                       after_seq: int | None = None) -> StreamingResponse:
    """Server-Sent Events: `id: <seq>`, `event: started|ended`, `data: <event JSON>`; a comment line
    every ~15 s keeps proxies from closing an idle connection. No deadline applies to this route
    (serving/admission.py); a client that lost the connection resumes with `Last-Event-ID`, and
    `retry:` tells browsers to do so after 2 s."""
    last_id = request.headers.get("last-event-id")
    if after_seq is None and last_id and last_id.isdigit():
        after_seq = int(last_id)
    generator = _streams().options(stream=True).subscribe.remote(after_seq, camera_id, rule)

    async def body():
        try:
            yield "retry: 2000\n: connected\n\n"
            async for item in generator:
                if await request.is_disconnected():
                    break
                if item.get("type") == "heartbeat":
                    # an id without data moves the client's Last-Event-ID without an event, so a
                    # client that reconnects after a quiet hour resumes exactly here
                    yield f": keep-alive\nid: {item['seq']}\n\n"
                    continue
                yield f"id: {item['seq']}\nevent: {item['phase']}\ndata: {json.dumps(item)}\n\n"
        finally:
            generator.cancel()

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/events/{event_id}/snapshot.jpg")
async def snapshot(event_id: str) -> Response:
    data = await _call(_streams().get_snapshot.remote(event_id), 30.0)
    return Response(content=data, media_type="image/jpeg")
