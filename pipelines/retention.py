"""Retention: the event store never fills the disk. Every store has an age and a size limit.

- `events`: rows of the event database (with their feed entries and deliveries). Ended episodes
  older than `max_age_days` go; past `max_mb` the oldest ended episodes go until it fits.
  Open episodes are kept (the stream worker ends them: `expired`, `camera_removed`, ...).
- `snapshots`: JPEG files. Older than `max_age_days`, or the oldest past `max_mb`; the event
  stays, marked as having no snapshot.
- `deliveries`: webhook rows already delivered or dead-lettered, older than `max_age_days`, and
  the oldest past `max_rows`. Queued ones are never deleted.

The defaults keep a 30-day window of a few cameras on a small disk (under 5 GB in all).

>>> pruner = Retention(store, RetentionSpec())
>>> pruner.run(now_wall=time.time())   # {"events": 12, "snapshots": 40, "deliveries": 300, ...}
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from pydantic import Field

from hub.contract import WireModel
from pipelines.events import EventStore, frame_path

log = logging.getLogger(__name__)
DAY_S = 86_400.0
_BATCH = 500  # rows deleted per transaction: the camera workers' writes are never held for long
# An ended episode whose webhooks are all delivered or dead-lettered (queued ones keep it).
_PRUNABLE = ("ended_ts IS NOT NULL AND event_id NOT IN (SELECT f.event_id FROM deliveries d JOIN feed f "
             "ON f.seq = d.seq WHERE d.delivered_wall IS NULL AND d.failed = 0)")




class StoreLimit(WireModel):
    max_age_days: float = Field(30.0, gt=0)
    max_mb: float = Field(512.0, gt=0)


class DeliveryLimit(WireModel):
    max_age_days: float = Field(30.0, gt=0)
    max_rows: int = Field(200_000, ge=1000)


class RetentionSpec(WireModel):
    """`retention:` of the streams config; each store has its own limits."""

    events: StoreLimit = StoreLimit(max_age_days=30.0, max_mb=512.0)
    snapshots: StoreLimit = StoreLimit(max_age_days=30.0, max_mb=4096.0)
    deliveries: DeliveryLimit = DeliveryLimit()
    interval_s: float = Field(600.0, gt=0)  # how often the limits are applied
    hard_quota: bool = True  # events.max_mb x 1.25 is a hard cap: past it writes spill (never a full disk)


class Retention:
    """Applies a `RetentionSpec` to one `EventStore`. Example: `Retention(store, spec).run()`."""

    def __init__(self, store: EventStore, spec: RetentionSpec | None = None) -> None:
        self.store = store
        self.spec = spec or RetentionSpec()
        self.last_run: dict | None = None

    def run(self, now_wall: float | None = None) -> dict:
        now = time.time() if now_wall is None else now_wall
        out = {"deliveries": self.prune_deliveries(now), "snapshots": self.prune_snapshots(now),
               "events": self.prune_events(now), "db_bytes": self.store.db_bytes(),
               "snapshot_bytes": _tree_bytes(self.store.snapshot_dir), "wall": now}
        if out["events"] or out["snapshots"] or out["deliveries"]:
            log.info("retention: removed %(events)d events, %(snapshots)d snapshots, %(deliveries)d deliveries", out)
        self.last_run = out
        return out

    # -- deliveries ---------------------------------------------------------------------------
    def prune_deliveries(self, now: float) -> int:
        lim = self.spec.deliveries
        done = "(delivered_wall IS NOT NULL OR failed = 1)"
        removed = self.store.execute(
            f"DELETE FROM deliveries WHERE {done} AND COALESCE(delivered_wall, next_attempt_wall) < ?",
            (now - lim.max_age_days * DAY_S,))
        extra = self.store.query("SELECT COUNT(*) FROM deliveries")[0][0] - lim.max_rows
        if extra > 0:
            removed += self.store.execute(
                f"DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE {done} ORDER BY id LIMIT ?)",
                (extra,))
        return removed

    # -- snapshots ----------------------------------------------------------------------------
    def prune_snapshots(self, now: float) -> int:
        lim = self.spec.snapshots
        removed = 0
        while True:  # by age, in batches
            rows = self.store.query("SELECT event_id, snapshot FROM events WHERE snapshot IS NOT NULL AND created_wall < ? "
                                    "ORDER BY created_wall LIMIT ?", (now - lim.max_age_days * DAY_S, _BATCH))
            if not rows:
                break
            removed += self._drop_snapshots(rows)
        budget = lim.max_mb * 1e6
        total = _tree_bytes(self.store.snapshot_dir)
        while total > budget:  # by size: the oldest first
            rows = self.store.query("SELECT event_id, snapshot FROM events WHERE snapshot IS NOT NULL "
                                    "ORDER BY created_wall LIMIT ?", (_BATCH,))
            if not rows:
                break
            for event_id, rel in rows:
                total -= _size(self.store.snapshot_dir / rel)
                removed += self._drop_snapshots([(event_id, rel)])
                if total <= budget:
                    break
        return removed

    def _drop_snapshots(self, rows: list[tuple[str, str]]) -> int:
        for _, rel in rows:
            (self.store.snapshot_dir / rel).unlink(missing_ok=True)
            (self.store.snapshot_dir / frame_path(rel)).unlink(missing_ok=True)  # its clean frame too
        ids = [r[0] for r in rows]
        self.store.execute(f"UPDATE events SET snapshot = NULL WHERE event_id IN ({', '.join('?' * len(ids))})",
                           tuple(ids))
        return len(rows)

    # -- events -------------------------------------------------------------------------------
    def prune_events(self, now: float) -> int:
        lim = self.spec.events
        removed = 0
        while ids := [r[0] for r in self.store.query(
                f"SELECT event_id FROM events WHERE {_PRUNABLE} AND updated_wall < ? ORDER BY updated_wall LIMIT ?",
                (now - lim.max_age_days * DAY_S, _BATCH))]:
            removed += self._drop_events(ids)
        while self.store.db_bytes() > lim.max_mb * 1e6 and (ids := [r[0] for r in self.store.query(
                f"SELECT event_id FROM events WHERE {_PRUNABLE} ORDER BY updated_wall LIMIT ?", (_BATCH // 5,))]):
            removed += self._drop_events(ids)
        return removed

    def _drop_events(self, ids: list[str]) -> int:
        marks = ", ".join("?" * len(ids))
        snaps = self.store.query(f"SELECT event_id, snapshot FROM events WHERE event_id IN ({marks}) "
                                 "AND snapshot IS NOT NULL", tuple(ids))
        self._drop_snapshots(snaps)
        self.store.execute(f"DELETE FROM deliveries WHERE seq IN (SELECT seq FROM feed WHERE event_id IN ({marks}))",
                           tuple(ids))
        self.store.execute(f"DELETE FROM feed WHERE event_id IN ({marks})", tuple(ids))
        return self.store.execute(f"DELETE FROM events WHERE event_id IN ({marks})", tuple(ids))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        total += sum(_size(Path(folder) / f) for f in files)
    return total
