"""Events survive a failing disk: a write that fails (disk full, I/O error, database locked) is kept
in a bounded in-memory spill and retried in order, with back-off, until the store takes it.

A rule fires once; if the store cannot take its event at that moment the event must not vanish.
The spill holds the event, its webhook receivers and its snapshot already encoded as JPEG (a few
hundred KB, not the raw frame). While anything is spilled, every new event queues behind it, so
the store still sees events in the order they happened; `health()` says what is wrong, which the
stream manager's status and `/readyz` report. The bound is the last resort: past `max_bytes` the
oldest snapshots are dropped first (the event itself is kept), past `max_items` the oldest events,
and `lost` counts them.

>>> recorder = SpillingRecorder(store, on_stored=notify)
>>> recorder.record(event, frame_rgb, webhooks=[url])   # StoredEvent, or None when spilled
>>> recorder.health()   # {"ok": False, "spilled": 3, "lost": 0, "last_error": "database or disk is full", ...}
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.events import EventStore, StoredEvent, encode_frame, encode_snapshot
from pipelines.rules.base import Event

log = logging.getLogger(__name__)

# What a failing disk or a busy database raises; anything else is a bug and is raised.
STORAGE_ERRORS = (OSError, sqlite3.Error)


@dataclass
class _Spilled:
    event: Event
    snapshot_jpeg: bytes | None
    frame_jpeg: bytes | None  # the clean frame (review export); dropped with the snapshot
    webhooks: tuple[str, ...]
    end_reason: str | None
    wall_s: float

    @property
    def nbytes(self) -> int:
        return len(self.snapshot_jpeg or b"") + len(self.frame_jpeg or b"") + 512


class SpillingRecorder:
    """Writes events to an `EventStore`, spilling to memory while the store fails.

    `on_stored(stored)` runs after each event reached the store (at once, or later from the spill),
    so webhooks and live listeners only ever see stored events.
    Example: `SpillingRecorder(store, max_items=5000).record(event, image, webhooks=urls)`.
    """

    def __init__(self, store: EventStore, *, on_stored: Callable[[StoredEvent], None] | None = None,
                 max_items: int = 5000, max_bytes: int = 256 * 1024 * 1024, retry_initial_s: float = 0.5,
                 retry_max_s: float = 30.0) -> None:
        self.store = store
        self.on_stored = on_stored
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self._spill: deque[_Spilled] = deque()
        self._bytes = 0
        self._lock = threading.Lock()  # one writer at a time keeps the order of the store's feed
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = 0
        self.snapshots_dropped = 0
        self.last_error: str | None = None
        self.failing_since_wall: float | None = None

    def record(self, event: Event, image_rgb: np.ndarray | None = None, webhooks: Sequence[str] = (),
               end_reason: str | None = None, *, snapshot_jpeg: bytes | None = None,
               frame_jpeg: bytes | None = None) -> StoredEvent | None:
        """Store the event now, or spill it; returns the stored view, or None when it was spilled.
        `snapshot_jpeg` / `frame_jpeg`: already encoded (a stream shard's event), instead of `image_rgb`."""
        # Encoded outside the lock: cameras draw their snapshots in parallel, only writes queue up.
        # The clean frame too: it is what `hub events export --reviewed` turns into training data.
        jpeg, frame = snapshot_jpeg, frame_jpeg
        if image_rgb is not None and event.phase == "started":
            jpeg, frame = encode_snapshot(event, image_rgb), encode_frame(image_rgb)
        with self._lock:
            if not self._spill:
                try:
                    stored = self.store.record(event, webhooks=webhooks, snapshot_jpeg=jpeg, frame_jpeg=frame,
                                               end_reason=end_reason)
                except STORAGE_ERRORS as exc:
                    self._fail(exc)
                else:
                    self._notify(stored)
                    return stored
            self._push(_Spilled(event, jpeg, frame, tuple(webhooks), end_reason, time.time()))
        self._ensure_thread()
        return None

    def flush(self) -> int:
        """Write spilled events in order until one fails; returns how many are still spilled."""
        with self._lock:
            while self._spill:
                item = self._spill[0]
                try:
                    stored = self.store.record(item.event, webhooks=item.webhooks, snapshot_jpeg=item.snapshot_jpeg,
                                               frame_jpeg=item.frame_jpeg,
                                               end_reason=item.end_reason, now_wall=item.wall_s)
                except STORAGE_ERRORS as exc:
                    self._fail(exc)
                    return len(self._spill)
                self._spill.popleft()
                self._bytes -= item.nbytes
                self._notify(stored)
            if self.failing_since_wall is not None:
                log.warning("event store writable again after %.0f s", time.time() - self.failing_since_wall)
            self.failing_since_wall = None
            return 0

    def health(self) -> dict:
        with self._lock:
            spilled = len(self._spill)
        ok = spilled == 0 and self.failing_since_wall is None
        return {"ok": ok, "spilled": spilled, "spilled_bytes": self._bytes, "lost": self.lost,
                "snapshots_dropped": self.snapshots_dropped, "failing_since_wall": self.failing_since_wall,
                "last_error": None if ok else self.last_error}

    def close(self, timeout_s: float = 5.0) -> int:
        """Stop retrying after one last flush; returns how many events could not be written."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        left = self.flush()
        if left:
            log.error("event store still failing at shutdown: %d spilled events are lost (%s)", left, self.last_error)
        return left

    # -- internals ----------------------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.failing_since_wall is None:
            self.failing_since_wall = time.time()
            log.error("event store write failed, spilling events to memory: %s", self.last_error)

    def _push(self, item: _Spilled) -> None:
        self._spill.append(item)
        self._bytes += item.nbytes
        for old in self._spill:  # over the byte bound: the oldest snapshots go first
            if self._bytes <= self.max_bytes:
                break
            if old.snapshot_jpeg or old.frame_jpeg:
                self._bytes -= len(old.snapshot_jpeg or b"") + len(old.frame_jpeg or b"")
                old.snapshot_jpeg = old.frame_jpeg = None
                self.snapshots_dropped += 1
        while len(self._spill) > self.max_items or self._bytes > self.max_bytes:
            gone = self._spill.popleft()
            self._bytes -= gone.nbytes
            self.lost += 1
            log.error("event spill full: event %s %s of %s lost", gone.event.event_id, gone.event.phase,
                      gone.event.camera_id)

    def _notify(self, stored: StoredEvent) -> None:
        if self.on_stored is not None and stored.seq:
            try:
                self.on_stored(stored)
            except Exception:  # a listener's bug must not undo a stored event
                log.exception("event listener failed")

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is not None:  # running: it ends only under this lock with nothing spilled
                self._wake.set()
                return
            self._thread = threading.Thread(target=self._retry, name="event-spill", daemon=True)
            self._thread.start()

    def _retry(self) -> None:
        delay_s = self.retry_initial_s
        while not self._stop.is_set():
            self._wake.wait(delay_s)
            self._wake.clear()
            if not self._stop.is_set() and self.flush() == 0:
                with self._lock:
                    if not self._spill:
                        self._thread = None
                        return
            delay_s = min(self.retry_max_s, delay_s * 2.0)
