"""What the tests share for waiting on a running system and putting its environment back."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any


def wait_for(predicate: Callable[[], Any], limit_s: float = 30.0, what: str = "the condition",
             poll_s: float = 0.2) -> Any:
    """Poll `predicate` until it returns something truthy (returned); fail after `limit_s`."""
    deadline = time.monotonic() + limit_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {limit_s:.0f} s waiting for {what}"
        time.sleep(poll_s)
    return value


def restore_env(saved: Mapping[str, str | None]) -> None:
    """Put environment variables back as `saved` recorded them (None: it was not set)."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
