"""HTTP routes of event review, included by the ingress (`serving/ingress.py`).

    POST /v1/events/{event_id}/review   {"action": "confirm" | "reject", "note": "..."}  -> the event + review
    GET  /v1/reviews?camera_id=&rule=&since=&until=&review=unreviewed|confirmed|rejected|reviewed&limit=
                                        events newest first, each with its `review` (or null)
    GET  /v1/events/{event_id}/frame.jpg  the event's frame without drawings (training data)

The reviewer recorded is the name of the API key (or of the browser session's key) that made the call.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field

from hub.contract import WireModel, validate_as
from serving.body import parse_json
from serving.calls import call
from serving.handles import get_handle

router = APIRouter(prefix="/v1", tags=["review"])
TIMEOUT_S = 30.0


class ReviewBody(WireModel):
    action: Literal["confirm", "reject"]
    note: str | None = Field(default=None, max_length=1000)


async def _call(response: Any) -> Any:
    return await call(response, TIMEOUT_S)


def parse_review(raw: bytes) -> ReviewBody:
    return validate_as(ReviewBody, parse_json(raw or b"{}"))


async def submit_review(request: Request, event_id: str, body: ReviewBody) -> dict:
    reviewer = getattr(request.state, "key_name", None)
    return await _call(get_handle("streams").review_event.remote(event_id, body.action, body.note, reviewer))


async def list_reviews(camera_id: str | None = None, rule: str | None = None, since: str | None = None,
                       until: str | None = None, review: str | None = None, limit: int = 100) -> list[dict]:
    from serving.streams_api import parse_since

    filters = {"camera_id": camera_id or None, "rule": rule or None, "since_wall": parse_since(since),
               "until_wall": parse_since(until), "state": review or None, "limit": limit}
    return await _call(get_handle("streams").list_reviews.remote(filters))


@router.post("/events/{event_id}/review")
async def review_event(event_id: str, request: Request) -> dict:
    """Confirm an event or reject it as a false alarm, with an optional note (the latest review wins)."""
    return await submit_review(request, event_id, parse_review(await request.body()))


@router.get("/reviews")
async def reviews(camera_id: str | None = None, rule: str | None = None, since: str | None = None,
                  until: str | None = None, review: str | None = None, limit: int = 100) -> dict:
    return {"events": await list_reviews(camera_id, rule, since, until, review, limit)}


@router.get("/events/{event_id}/frame.jpg")
async def frame(event_id: str) -> Response:
    data = await _call(get_handle("streams").get_snapshot.remote(event_id, True))
    return Response(content=data, media_type="image/jpeg")
