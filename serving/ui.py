"""Event review in a browser: server-rendered pages (Jinja2, no frontend build) at `/ui`.

    GET  /ui/login, POST /ui/login     an API key in a form -> a session cookie (12 h)
    POST /ui/logout
    GET  /ui                           cameras: state, achieved rate, model version (and a refused
                                       version's error), a recent thumbnail
    GET  /ui/events?camera_id=&rule=&since=&until=&review=   events with snapshot, model version,
                                       review state; confirm / reject buttons with a note
    POST /ui/events/{event_id}/review  the same review as `POST /v1/events/{id}/review`

The pages sit behind the same API keys as the API. The session cookie is `name|expiry|HMAC` keyed
with the stored digest of that key: revoking or rotating the key ends its sessions, and nothing
but the digests the hub already holds is needed to check one (any ingress replica can). The cookie
is HttpOnly and SameSite=Strict, and POSTs from another origin are refused (no cross-site forms).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from hub.errors import HubError, Unauthorized
from serving.calls import call
from serving.handles import get_handle
from serving.review_api import ReviewBody, list_reviews, parse_review, submit_review

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
templates.env.filters["utc"] = lambda wall: datetime.fromtimestamp(float(wall), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

UI_PREFIX = "/ui"
LOGIN_PATH = "/ui/login"
COOKIE = "hub_session"
SESSION_S = 12 * 3600
TIMEOUT_S = 30.0
FILTERS = ("camera_id", "rule", "since", "until", "review")


# -- sessions -------------------------------------------------------------------------------------
def _sign(name: str, expiry: int, key_digest: str) -> str:
    return hmac.new(key_digest.encode(), f"{name}|{expiry}".encode(), hashlib.sha256).hexdigest()


def session_cookie(name: str, keys, now_s: float | None = None) -> str:
    expiry = int((time.time() if now_s is None else now_s) + SESSION_S)
    digest = dict(keys.digests)[name]
    return f"{name}|{expiry}|{_sign(name, expiry, digest)}"


def session_name(cookie: str | None, keys, now_s: float | None = None) -> str | None:
    """The key name of a valid session cookie, else None."""
    try:
        name, expiry_text, mac = (cookie or "").split("|")
        expiry = int(expiry_text)
    except ValueError:
        return None
    if expiry < (time.time() if now_s is None else now_s):
        return None
    for known_name, digest in keys.digests:
        if known_name == name and hmac.compare_digest(mac, _sign(name, expiry, digest)):
            return name
    return None


def browser_gate(request: Request, keys) -> Response | None:
    """For `/ui` requests without an Authorization header (called by the ingress' auth middleware):
    None lets the request through (the session's key name in `request.state.key_name`); otherwise the
    response to send (to the login page, or 403 for a cross-site POST)."""
    if request.method == "POST" and not _same_origin(request):
        return HTMLResponse("cross-site form posts are refused", status_code=403)
    request.state.keys = keys  # the login form checks a key against them
    if request.url.path == LOGIN_PATH or not keys.required:
        return None
    name = session_name(request.cookies.get(COOKIE), keys)
    if name is None:
        return RedirectResponse(LOGIN_PATH, status_code=303)
    request.state.key_name = name
    return None


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", request.url.netloc)


# -- pages ----------------------------------------------------------------------------------------
async def _call(response: Any) -> Any:
    return await call(response, TIMEOUT_S)


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, error: str | None = None) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"error": error})


@router.post("/login")
async def login(request: Request, api_key: str = Form(...)) -> Response:
    keys = getattr(request.state, "keys", None)
    try:
        name = keys.check(f"Bearer {api_key.strip()}") if keys is not None else None
    except Unauthorized:
        return templates.TemplateResponse(request, "login.html", {"error": "unknown or revoked API key"},
                                          status_code=401)
    response = RedirectResponse(UI_PREFIX, status_code=303)
    if name is not None:
        response.set_cookie(COOKIE, session_cookie(name, keys), max_age=SESSION_S, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path=UI_PREFIX)
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(COOKIE, path=UI_PREFIX)
    return response


@router.get("", response_class=HTMLResponse)
async def cameras(request: Request) -> HTMLResponse:
    streams = await _call(get_handle("streams").list_streams.remote())
    return templates.TemplateResponse(request, "cameras.html", {"streams": streams, "user": _user(request)})


@router.get("/events", response_class=HTMLResponse)
async def events(request: Request, camera_id: str | None = None, rule: str | None = None, since: str | None = None,
                 until: str | None = None, review: str | None = None) -> HTMLResponse:
    filters = {"camera_id": camera_id, "rule": rule, "since": since, "until": until, "review": review}
    error = None
    try:
        rows = await list_reviews(camera_id, rule, since, until, review, 200)
    except HubError as exc:  # a bad filter is shown on the page, not as a JSON error
        rows, error = [], str(exc)
    query = urlencode({k: v for k, v in filters.items() if v})
    return templates.TemplateResponse(request, "events.html", {"events": rows, "filters": filters, "query": query,
                                                               "error": error, "user": _user(request)})


@router.post("/events/{event_id}/review")
async def review(request: Request, event_id: str, action: str = Form(...), note: str = Form(""),
                 back: str = Form("")) -> Response:
    body: ReviewBody = parse_review(json.dumps({"action": action, "note": note or None}).encode())
    await submit_review(request, event_id, body)
    target = f"{UI_PREFIX}/events" + (f"?{back}" if back and "://" not in back and not back.startswith("/") else "")
    return RedirectResponse(f"{target}#{event_id}", status_code=303)


@router.get("/events/{event_id}/snapshot.jpg")
async def snapshot(event_id: str) -> Response:
    return Response(await _call(get_handle("streams").get_snapshot.remote(event_id)), media_type="image/jpeg")


@router.get("/cameras/{camera_id}/thumbnail.jpg")
async def thumbnail(camera_id: str) -> Response:
    data = await _call(get_handle("streams").thumbnail.remote(camera_id))
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


def _user(request: Request) -> str | None:
    return getattr(request.state, "key_name", None)
