"""Deployment handles visible to the routers of the ingress replica.

The ingress constructor registers the handles it was bound with; routers added by pipelines
(`serving/streams_api.py`, `serving/hotline_api.py`) look them up by name instead of making
HTTP calls to the hub itself.

>>> resp = await get_handle("reason").predict.remote(ReasonRequest(text="..."))
"""

from __future__ import annotations

from typing import Any

from hub.errors import NotFound, NotReady

_HANDLES: dict[str, Any] = {}


def set_handles(handles: dict[str, Any]) -> None:
    _HANDLES.clear()
    _HANDLES.update(handles)


def get_handle(name: str) -> Any:
    if not _HANDLES:
        raise NotReady("the ingress has no deployment handles yet")
    try:
        return _HANDLES[name]
    except KeyError:
        raise NotFound(f"{name!r} is not served by this hub (served: {sorted(_HANDLES)})") from None


def served() -> list[str]:
    return sorted(_HANDLES)
