"""Credential redaction for anything that may carry a URL: errors, logs, API answers, SSE, metrics.

FFmpeg's error text repeats the whole URL it failed on (`rtsp://user:pass@host/...`), so redacting
only the `url` field is not enough: every string that leaves the process goes through `redact_text`.

>>> redact_url("rtsp://admin:s3cret@10.0.0.17:554/s1")
'rtsp://***@10.0.0.17:554/s1'
>>> redact_text("open failed: 404 on 'rtsp://admin:s3cret@cam/s1?token=abc'")
"open failed: 404 on 'rtsp://***@cam/s1?token=***'"
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MASK = "***"
# scheme://userinfo@ : userinfo is everything up to the last "@" before the path starts.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s@'\"<>]*@)+")
# Query/form parameters whose values are secrets by name.
_SECRET_PARAM = re.compile(
    r"(?P<key>\b(?:password|passwd|pass|pwd|token|access_token|api_key|apikey|key|secret|auth|signature|sig)=)"
    r"(?P<value>[^&\s'\"<>#]+)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """The URL with its user:password (and secret query values) replaced by `***`."""
    return redact_text(url)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Any text with credentials in URLs, secret query values and the given literal secrets masked."""
    if not text:
        return text
    out = _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    out = _SECRET_PARAM.sub(lambda m: f"{m.group('key')}{MASK}", out)
    for secret in secrets:
        if secret and len(secret) >= 3:  # a 1-2 character "secret" would mask half the message
            out = out.replace(secret, MASK)
    return out


def url_secrets(url: str) -> tuple[str, ...]:
    """The literal credential strings in a URL (raw and percent-decoded), to mask wherever they
    appear, e.g. in a library's message that quotes the password without the URL around it."""
    try:
        parts = urlsplit(url)
        username, password = parts.username, parts.password
    except ValueError:
        return ()
    found: list[str] = []
    for value in (password, username if password else None):
        if value:
            found.extend({value, unquote(value)})
    return tuple(found)


def has_credentials(url: str) -> bool:
    """True when the URL carries a user name or password."""
    try:
        parts = urlsplit(url)
        return bool(parts.username or parts.password)
    except ValueError:
        return "@" in url.split("/", 3)[2] if url.count("/") >= 2 else False
