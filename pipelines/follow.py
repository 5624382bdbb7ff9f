"""A camera detector that follows its registry alias the way HTTP replicas do.

`FollowingDetector(ref, load, current_version)` holds the loaded version of `ref` (e.g.
`models:/overhead-cars@champion`). Every `poll_s` a background thread asks where the alias points;
when it moved, the new version is loaded BESIDE the old one (`load` warms it up), then swapped in.
Frames already inside the old detector finish there and are tagged with the old version; the old
one is closed once no call uses it. Nothing restarts and no frame is lost.

A version that fails to load is not swapped in: the old one keeps serving, `info()["error"]` says
why (shown by `/v1/streams`), and the failed version is not retried until the alias moves again.
A reference pinned to a version (`models:/name/3`) never changes and is never polled.

Every `Detections` it returns carries `model=(name, version)`: what events record.

>>> det = FollowingDetector("models:/overhead-cars@champion", load=core_loader, current_version=store_lookup)
>>> det.start(poll_s=5.0)
>>> det.detect_arrays(frames)[0].model
('overhead-cars', '2')
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 60.0  # longest wait for in-flight frames before an old version is closed anyway


@dataclass
class _Slot:
    detector: Any
    info: dict
    users: int = 0
    model: tuple[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.model = (str(self.info.get("name")), str(self.info.get("version")))


class FollowingDetector:
    """See module doc. `load(ref) -> (detector, {"name", "version", "alias"})`;
    `current_version(ref) -> version | None` (where the alias points now)."""

    def __init__(self, ref: str, load: Callable[[str], tuple[Any, dict]],
                 current_version: Callable[[str], str | None], *, follows: bool = True) -> None:
        self.ref = ref
        self._load = load
        self._current_version = current_version
        self.follows = follows
        self._cond = threading.Condition()
        detector, info = load(ref)  # the first load fails loudly: a camera cannot start without it
        self._slot = _Slot(detector, info)
        self.error: str | None = None
        self.failed_version: str | None = None
        self.swapped_wall: float | None = None
        self.swaps = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the batch function ---------------------------------------------------------------------
    def detect_arrays(self, frames, **kwargs) -> list:
        with self._cond:
            slot = self._slot
            slot.users += 1
        try:
            dets = slot.detector.detect_arrays(frames, **kwargs)
        finally:
            with self._cond:
                slot.users -= 1
                self._cond.notify_all()
        return [replace(d, model=slot.model) for d in dets]

    # -- following --------------------------------------------------------------------------------
    def start(self, poll_s: float) -> FollowingDetector:
        if self.follows and self._thread is None:
            self._thread = threading.Thread(target=self._poll, args=(poll_s,), name=f"follow-{self.ref}", daemon=True)
            self._thread.start()
        return self

    def _poll(self, poll_s: float) -> None:
        while not self._stop.wait(poll_s):
            try:
                self.check()
            except Exception as exc:  # the registry may be briefly unreachable: keep serving, say so
                self.error = f"registry poll failed: {exc}"
                log.warning("streams: %s: %s", self.ref, self.error)

    def check(self) -> bool:
        """One poll: load and swap in the alias's version if it moved. True when a swap happened."""
        wanted = self._current_version(self.ref)
        loaded = self._slot.model[1]
        if wanted is None or wanted == loaded:
            if wanted == loaded:
                self.error, self.failed_version = None, None  # back on the loaded version (a rollback)
            return False
        if wanted == self.failed_version:
            return False
        try:
            detector, info = self._load(self.ref)
        except Exception as exc:
            self.failed_version = wanted
            self.error = f"version {wanted} failed to load; still on version {loaded}: {exc}"
            log.error("streams: %s: %s", self.ref, self.error)
            return False
        self._swap(_Slot(detector, info))
        self.error, self.failed_version = None, None
        log.info("streams: %s now on version %s (was %s)", self.ref, info.get("version"), loaded)
        return True

    def _swap(self, new: _Slot) -> None:
        with self._cond:
            old, self._slot = self._slot, new
            self.swaps += 1
            self.swapped_wall = time.time()
            self._cond.wait_for(lambda: old.users == 0, timeout=CLOSE_WAIT_S)
        _close(old.detector)

    def info(self) -> dict:
        slot = self._slot
        return {**slot.info, "ref": self.ref, "follows": self.follows, "error": self.error,
                "failed_version": self.failed_version, "swaps": self.swaps, "swapped_wall": self.swapped_wall}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        _close(self._slot.detector)


def _close(detector: Any) -> None:
    close = getattr(detector, "close", None)
    if callable(close):
        try:
            close()
        except Exception as exc:  # closing an old version must never disturb the new one
            log.warning("streams: closing a detector failed: %s", exc)
