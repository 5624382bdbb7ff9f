"""The review pages' browser session: a cookie signed with the stored digest of an API key."""

from __future__ import annotations

import pytest

from serving.auth import KeyRing, digest
from serving.ui import SESSION_S, session_cookie, session_name


def _ring(*pairs: tuple[str, str]) -> KeyRing:
    return KeyRing(required=True, digests=tuple((name, digest(key)) for name, key in pairs))


NOW = 1_800_000_000.0


@pytest.mark.parametrize("tamper, ring_after, at, expected", [
    (lambda c: c, _ring(("ops", "k1")), NOW + 60, "ops"),  # a fresh cookie
    (lambda c: c, _ring(("ops", "k1")), NOW + SESSION_S + 1, None),  # expired
    (lambda c: c.replace("ops|", "lead|", 1), _ring(("ops", "k1"), ("lead", "k2")), NOW, None),  # another name
    (lambda c: c[:-1] + ("0" if c[-1] != "0" else "1"), _ring(("ops", "k1")), NOW, None),  # forged MAC
    (lambda c: c, _ring(("ops", "rotated")), NOW, None),  # the key was rotated: its sessions end
    (lambda c: c, _ring(), NOW, None),  # the key was revoked
    (lambda c: "garbage", _ring(("ops", "k1")), NOW, None),
])
def test_session_cookie(tamper, ring_after, at, expected):
    cookie = session_cookie("ops", _ring(("ops", "k1")), now_s=NOW)
    assert session_name(tamper(cookie), ring_after, now_s=at) == expected
