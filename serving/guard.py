"""Request guard of the ingress (pure ASGI, outermost): Host check, CSRF defence, body cap.

- **Host**: the `Host` header must name the hub, so a web page that rebinds its own DNS name to
  127.0.0.1 cannot talk to a loopback hub from a browser. Allowed: `http.allowed_hosts`, plus the
  loopback names; when neither `allowed_hosts` is set nor the hub is bound to loopback, any Host.
- **CSRF**: a browser sends a cross-site POST without a preflight only as text/plain,
  urlencoded or multipart. The API's mutating routes accept `application/json`, `multipart/form-data`
  and raw media (`image/*`, `audio/*`, `application/octet-stream`) only (415 otherwise), and any
  mutating request whose `Origin` (or `Sec-Fetch-Site: cross-site`) names another site is 403;
  the review UI's forms (`/ui`) keep urlencoded but get the same Origin check.
- **Body cap**: every route's body is limited to `http.max_body_mib` (413), by `Content-Length`
  at once and by counting chunks otherwise.

>>> app.add_middleware(RequestGuard, settings=lambda: GuardSettings(max_body_bytes=20 << 20))
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_TYPES = ("application/json", "multipart/form-data", "application/octet-stream")
API_PREFIXES = ("image/", "audio/", "video/")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True)
class GuardSettings:
    max_body_bytes: int = 20 << 20
    allowed_hosts: tuple[str, ...] = ()  # empty: loopback names when `loopback`, else any
    loopback: bool = True


def host_allowed(host_header: str, settings: GuardSettings) -> bool:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8000
        name = host.split("]", 1)[0] + "]"
    else:
        name = host.split(":", 1)[0] if host.count(":") == 1 else host
    if name in LOOPBACK_NAMES:
        return True
    if settings.allowed_hosts:
        return any(name == a or (a.startswith("*.") and name.endswith(a[1:])) for a in settings.allowed_hosts)
    return not settings.loopback


def _error(status: int, code: str, message: str, field: str | None = None) -> tuple[int, bytes]:
    body = {"code": code, "message": message}
    if field:
        body["field"] = field
    return status, json.dumps({"error": body}).encode()


def check_request(method: str, path: str, headers: dict[str, str], settings: GuardSettings) -> tuple[int, bytes] | None:
    """The refusal (status, JSON body) for a request, or None when it may pass."""
    host = headers.get("host", "")
    if not host_allowed(host, settings):
        return _error(400, "invalid_input", f"Host {host[:80]!r} is not one of http.allowed_hosts", "host")
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_body_bytes:
        return _error(413, "payload_too_large",
                      f"body of {declared} bytes is over the limit of {settings.max_body_bytes} bytes")
    if method not in MUTATING:
        return None
    origin = headers.get("origin")
    if origin and origin != "null":
        if urlsplit(origin).netloc.lower() != host.lower():
            return _error(403, "forbidden", f"cross-site request from {origin[:80]!r} refused", "origin")
    elif headers.get("sec-fetch-site") == "cross-site" or origin == "null":
        return _error(403, "forbidden", "cross-site request refused", "origin")
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    has_body = declared not in ("", "0") or "chunked" in headers.get("transfer-encoding", "")
    if path.startswith("/ui/"):
        return None if (content_type in FORM_TYPES or not has_body) else _error(
            415, "unsupported_media_type", "the review pages post forms only", "content-type")
    if not content_type and not has_body:
        return None  # e.g. DELETE, or a POST action without a body
    if content_type in API_TYPES or content_type.startswith(API_PREFIXES):
        return None
    return _error(415, "unsupported_media_type",
                  f"content type {content_type or '(none)'!r} is not accepted: send application/json, "
                  "multipart/form-data or the raw media with its own type", "content-type")


class RequestGuard:
    """ASGI middleware applying `check_request` and counting the body against the cap."""

    def __init__(self, app, settings: Callable[[], GuardSettings]) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        settings = self.settings()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = check_request(scope["method"], scope["path"], headers, settings)
        if refusal is not None:
            return await _respond(send, *refusal)
        seen, answered = 0, False

        async def guarded_send(message):
            if not answered:  # after our 413 the app's own answer (to the cut body) is dropped
                await send(message)

        async def counted():
            nonlocal seen, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > settings.max_body_bytes:  # a chunked body without Content-Length
                    await _respond(send, *_error(413, "payload_too_large",
                                                 f"body is over the limit of {settings.max_body_bytes} bytes"))
                    answered = True
                    return {"type": "http.disconnect"}
            return message

        try:
            return await self.app(scope, counted, guarded_send)
        except Exception:
            if not answered:
                raise
            return None  # the app failed on the body we cut off; the caller already has its 413


async def _respond(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
