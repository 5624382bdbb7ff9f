"""A stream shard's events until the stream manager has stored them (serving/shards.py).

The shard's `EventSink` writes to an `Outbox` as it would to the `EventStore`; the manager
long-polls `drain(ack_seq)` and acknowledges what it stored with the next poll, so an event leaves
the outbox only once it is in the store. It also hands each camera's open episodes (from the
manager's store) to the camera's `EpisodeLedger`, which reads them through `open_events`.

>>> box = Outbox(); box.record(event, snapshot_jpeg=jpeg, webhooks=[url])
>>> items = box.drain(ack_seq=0, wait_s=0.5)     # then drain(items[-1].seq, ...) acknowledges them
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from itertools import islice

from pipelines.events import StoredEvent
from pipelines.rules.base import Event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboxItem:
    seq: int
    event: Event
    snapshot_jpeg: bytes | None
    frame_jpeg: bytes | None
    webhooks: tuple[str, ...]
    end_reason: str | None


class Outbox:
    """A shard's events until the manager acknowledges them; the `store` of the shard's EventSink.

    It also hands each camera's open episodes (from the manager's store) to the camera's ledger.
    Bounded: past `max_items` the oldest unacknowledged event is dropped and counted in `lost`.
    """

    def __init__(self, max_items: int = 10_000) -> None:
        self.max_items = max_items
        self.lost = 0
        self._items: deque[OutboxItem] = deque()
        self._cond = threading.Condition()
        self._seq = 0
        self._carried: dict[str, list[StoredEvent]] = {}

    def carry(self, camera_id: str, open_events: list[StoredEvent]) -> None:
        with self._cond:
            self._carried[camera_id] = list(open_events)

    def open_events(self, camera_id: str | None = None) -> list[StoredEvent]:
        with self._cond:
            return self._carried.pop(camera_id, [])

    def record(self, event: Event, image_rgb=None, webhooks=(), now_wall: float | None = None, *,
               snapshot_jpeg: bytes | None = None, frame_jpeg: bytes | None = None,
               end_reason: str | None = None) -> StoredEvent:
        now = time.time() if now_wall is None else now_wall
        with self._cond:
            self._seq += 1
            self._items.append(OutboxItem(self._seq, event, snapshot_jpeg, frame_jpeg, tuple(webhooks), end_reason))
            while len(self._items) > self.max_items:
                gone = self._items.popleft()
                self.lost += 1
                log.error("shard outbox full: event %s %s lost", gone.event.event_id, gone.event.phase)
            self._cond.notify_all()
        return StoredEvent(event, None, now, now, seq=0, end_reason=end_reason)  # seq 0: not stored yet

    def drain(self, ack_seq: int, wait_s: float, limit: int = 256) -> list[OutboxItem]:
        """Forget what the manager acknowledged; then what is waiting (up to `wait_s` for something)."""
        with self._cond:
            while self._items and self._items[0].seq <= ack_seq:
                self._items.popleft()
            if not self._items:
                self._cond.wait(wait_s)
            return list(islice(self._items, limit))
