"""Durable events: a SQLite store with JPEG snapshots on disk, written **before** any delivery, and
webhook delivery with retry and back-off driven from that store (so nothing is lost on restart).

Layout under `<data_dir>/events/`: `events.db` and `snapshots/<camera_id>/<event_id>.jpg`.
Every write of an event also appends to a feed (`seq`), which `hub events tail` and the SSE
endpoint read in order; every webhook gets one delivery row per event phase.

>>> store = EventStore.open()                      # under get_settings().data_dir
>>> store.record(event, frame.image, webhooks=["http://ops.example/hook"])
>>> store.list_events(camera_id="cam17", rule="illegal_parking", since_wall_s=0)
>>> WebhookSender(store).start()                   # delivers pending rows, retries with back-off
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from hub.errors import NotFound
from pipelines.rules.base import Event

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY, camera_id TEXT NOT NULL, rule TEXT NOT NULL, zone_id TEXT NOT NULL,
    track_id INTEGER, started_ts REAL NOT NULL, ended_ts REAL, bbox TEXT NOT NULL, score REAL,
    class_name TEXT, fired_ts REAL, snapshot TEXT, created_wall REAL NOT NULL, updated_wall REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_camera ON events (camera_id, created_wall);
CREATE TABLE IF NOT EXISTS feed (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, phase TEXT NOT NULL, wall REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, seq INTEGER NOT NULL, url TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_wall REAL NOT NULL,
    delivered_wall REAL, failed INTEGER NOT NULL DEFAULT 0, last_error TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (delivered_wall, failed, next_attempt_wall);
"""

_COLUMNS = ("event_id", "camera_id", "rule", "zone_id", "track_id", "started_ts", "ended_ts", "bbox",
            "score", "class_name", "fired_ts", "snapshot", "created_wall", "updated_wall")


@dataclass(frozen=True)
class StoredEvent:
    """An event as stored: the rule's fields plus where its snapshot is and when it was written."""

    event: Event
    snapshot: str | None
    created_wall: float
    updated_wall: float
    seq: int = 0  # position in the feed of the write that produced this view

    def to_dict(self) -> dict:
        out = self.event.to_dict()
        out.update(has_snapshot=self.snapshot is not None, created_wall=self.created_wall,
                   updated_wall=self.updated_wall, seq=self.seq)
        return out


def draw_snapshot(image_rgb: np.ndarray, bbox: Sequence[float], label: str, quality: int = 85) -> bytes:
    """JPEG of the frame with the event's box and label drawn (what an operator looks at)."""
    bgr = cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2BGR)
    h, w = bgr.shape[:2]
    thick = max(2, round(min(h, w) / 240))
    x1, y1, x2, y2 = (int(round(v)) for v in bbox)
    cv2.rectangle(bgr, (x1, y1), (x2, y2), (0, 0, 255), thick)
    scale = max(0.5, min(h, w) / 720)
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    ty = y1 - 4 if y1 - th - base - 4 > 0 else y2 + th + 4
    cv2.rectangle(bgr, (x1, ty - th - base), (x1 + tw + 4, ty + base), (0, 0, 255), -1)
    cv2.putText(bgr, label, (x1 + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV cannot encode a valid uint8 image only on a broken build
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


class EventStore:
    """SQLite event store (WAL, one connection guarded by a lock: writes are few, reads are small).

    Example: `store = EventStore(tmp_path); store.record(event, frame_rgb); store.get(event.event_id)`.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.snapshot_dir = self.root / "snapshots"
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / "events.db", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an event acknowledged is an event on disk
        self._db.executescript(_SCHEMA)

    @classmethod
    def open(cls, data_dir: Path | None = None) -> EventStore:
        if data_dir is None:
            from hub.settings import get_settings

            data_dir = get_settings().data_dir
        return cls(Path(data_dir) / "events")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing ----------------------------------------------------------------------------------
    def record(self, event: Event, image_rgb: np.ndarray | None = None,
               webhooks: Sequence[str] = (), now_wall: float | None = None) -> StoredEvent:
        """Store a started event (with its snapshot) or an ended update, queue webhook deliveries,
        and only then return: delivery always reads from here."""
        now = time.time() if now_wall is None else now_wall
        snapshot = None
        if image_rgb is not None and event.phase == "started":
            snapshot = self._write_snapshot(event, image_rgb)
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if event.phase == "started":
                self._db.execute(
                    f"INSERT OR REPLACE INTO events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                    (event.event_id, event.camera_id, event.rule, event.zone_id, event.track_id,
                     event.started_ts, event.ended_ts, json.dumps(list(event.bbox)), event.score,
                     event.class_name, event.fired_ts, snapshot, now, now),
                )
            else:
                cur = self._db.execute(
                    "UPDATE events SET ended_ts=?, updated_wall=? WHERE event_id=?",
                    (event.ended_ts, now, event.event_id),
                )
                if cur.rowcount == 0:  # an end whose start was never stored (store wiped): keep it whole
                    self._db.execute(
                        f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                        (event.event_id, event.camera_id, event.rule, event.zone_id, event.track_id,
                         event.started_ts, event.ended_ts, json.dumps(list(event.bbox)), event.score,
                         event.class_name, event.fired_ts, None, now, now),
                    )
            seq = self._db.execute(
                "INSERT INTO feed (event_id, phase, wall) VALUES (?, ?, ?)", (event.event_id, event.phase, now)
            ).lastrowid
            self._db.executemany(
                "INSERT INTO deliveries (seq, url, next_attempt_wall) VALUES (?, ?, ?)",
                [(seq, url, now) for url in webhooks],
            )
        stored = self.get(event.event_id)
        return StoredEvent(stored.event, stored.snapshot, stored.created_wall, stored.updated_wall, seq)

    def _write_snapshot(self, event: Event, image_rgb: np.ndarray) -> str:
        label = f"{event.rule} {event.class_name} {event.score:.2f}".strip()
        data = draw_snapshot(image_rgb, event.bbox, label)
        rel = Path(_safe(event.camera_id)) / f"{_safe(event.event_id)}.jpg"
        path = self.snapshot_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".jpg.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a reader never sees half a JPEG
        return rel.as_posix()

    # -- reading ----------------------------------------------------------------------------------
    def _row_to_stored(self, row: tuple, seq: int = 0, phase: str | None = None) -> StoredEvent:
        d = dict(zip(_COLUMNS, row, strict=True))
        # A feed entry of the start shows the episode as it was then, even if it has ended since.
        ended = None if phase == "started" else d["ended_ts"]
        event = Event(
            event_id=d["event_id"], camera_id=d["camera_id"], rule=d["rule"], zone_id=d["zone_id"],
            track_id=int(d["track_id"]) if d["track_id"] is not None else -1, started_ts=d["started_ts"],
            ended_ts=ended, bbox=tuple(json.loads(d["bbox"])), score=d["score"] or 0.0,
            class_name=d["class_name"] or "", phase=phase or ("ended" if ended is not None else "started"),
            fired_ts=d["fired_ts"],
        )
        return StoredEvent(event, d["snapshot"], d["created_wall"], d["updated_wall"], seq)

    def get(self, event_id: str) -> StoredEvent:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM events WHERE event_id=?", (event_id,)).fetchone()
        if row is None:
            raise NotFound(f"no event {event_id!r}")
        return self._row_to_stored(row)

    def list_events(self, camera_id: str | None = None, rule: str | None = None,
                    since_wall_s: float | None = None, limit: int = 100) -> list[StoredEvent]:
        """Newest first; `since_wall_s` keeps events created or updated at/after that wall time."""
        where, args = [], []
        if camera_id:
            where.append("camera_id=?")
            args.append(camera_id)
        if rule:
            where.append("rule=?")
            args.append(rule)
        if since_wall_s is not None:
            where.append("updated_wall>=?")
            args.append(since_wall_s)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_wall DESC, rowid DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, max(1, min(int(limit), 10_000)))).fetchall()
        return [self._row_to_stored(r) for r in rows]

    def feed(self, after_seq: int = 0, limit: int = 100) -> list[StoredEvent]:
        """Writes after `after_seq`, oldest first: each start and each end of an episode once."""
        cols = ", ".join(f"e.{c}" for c in _COLUMNS)
        with self._lock:
            rows = self._db.execute(
                f"SELECT f.seq, f.phase, {cols} FROM feed f JOIN events e ON e.event_id = f.event_id "
                "WHERE f.seq > ? ORDER BY f.seq LIMIT ?", (int(after_seq), int(limit)),
            ).fetchall()
        return [self._row_to_stored(r[2:], seq=r[0], phase=r[1]) for r in rows]

    def last_seq(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(seq) FROM feed").fetchone()
        return int(row[0] or 0)

    def snapshot_bytes(self, event_id: str) -> bytes:
        stored = self.get(event_id)
        if not stored.snapshot:
            raise NotFound(f"event {event_id!r} has no snapshot")
        path = (self.snapshot_dir / stored.snapshot).resolve()
        if self.snapshot_dir.resolve() not in path.parents or not path.exists():
            raise NotFound(f"snapshot of event {event_id!r} is missing")
        return path.read_bytes()

    # -- deliveries -------------------------------------------------------------------------------
    def due_deliveries(self, now_wall: float, limit: int = 50) -> list[tuple[int, str, int, dict]]:
        """(delivery id, url, attempts, payload) of deliveries whose next attempt is due."""
        cols = ", ".join(f"e.{c}" for c in _COLUMNS)
        with self._lock:
            rows = self._db.execute(
                f"SELECT d.id, d.url, d.attempts, f.seq, f.phase, {cols} FROM deliveries d "
                "JOIN feed f ON f.seq = d.seq JOIN events e ON e.event_id = f.event_id "
                "WHERE d.delivered_wall IS NULL AND d.failed = 0 AND d.next_attempt_wall <= ? "
                "ORDER BY d.next_attempt_wall, d.id LIMIT ?", (now_wall, limit),
            ).fetchall()
        return [(r[0], r[1], r[2], self._row_to_stored(r[5:], seq=r[3], phase=r[4]).to_dict()) for r in rows]

    def mark_delivered(self, delivery_id: int, now_wall: float) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE deliveries SET delivered_wall=?, attempts=attempts+1 WHERE id=?",
                             (now_wall, delivery_id))

    def mark_failed_attempt(self, delivery_id: int, error: str, next_attempt_wall: float | None) -> None:
        """Record a failed attempt; `next_attempt_wall=None` gives up on this delivery."""
        with self._lock, self._db:
            self._db.execute(
                "UPDATE deliveries SET attempts=attempts+1, last_error=?, next_attempt_wall=COALESCE(?, next_attempt_wall), "
                "failed=? WHERE id=?", (error[:500], next_attempt_wall, int(next_attempt_wall is None), delivery_id),
            )

    def delivery_counts(self) -> dict[str, int]:
        with self._lock:
            pending, delivered, failed = self._db.execute(
                "SELECT SUM(delivered_wall IS NULL AND failed=0), SUM(delivered_wall IS NOT NULL), SUM(failed) "
                "FROM deliveries"
            ).fetchone()
        return {"pending": int(pending or 0), "delivered": int(delivered or 0), "failed": int(failed or 0)}


def _safe(name: str) -> str:
    """A path component that cannot climb out of the snapshot folder."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".")
    return cleaned or "_"


@dataclass(frozen=True)
class WebhookPolicy:
    """Retry schedule of webhook deliveries (wall-clock: delivery is about the receiver, not video)."""

    timeout_s: float = 5.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    max_attempts: int = 20  # then the delivery is marked failed (still visible in the store)
    poll_s: float = 0.5


class WebhookSender:
    """Delivers pending rows of an `EventStore` as JSON POSTs, retrying with back-off.

    It keeps no state of its own: after a restart a new sender picks up what the store says is due.
    Example: `sender = WebhookSender(store).start(); ...; sender.stop()`.
    """

    def __init__(self, store: EventStore, policy: WebhookPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or WebhookPolicy()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> WebhookSender:
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """A new event was recorded: look now rather than at the next poll."""
        self._wake.set()

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=self.policy.timeout_s, follow_redirects=False) as client:
            while not self._stop.is_set():
                try:
                    self.deliver_due(client)
                except Exception:  # a store hiccup must not kill delivery for good
                    log.exception("webhook delivery round failed")
                self._wake.wait(self.policy.poll_s)
                self._wake.clear()

    def deliver_due(self, client, now_wall: float | None = None) -> int:
        """One round: try every due delivery once; returns how many succeeded."""
        ok = 0
        for delivery_id, url, attempts, payload in self.store.due_deliveries(time.time() if now_wall is None else now_wall):
            if self._stop.is_set():
                break
            try:
                resp = client.post(url, json=payload, headers={"Idempotency-Key": f"{payload['event_id']}:{payload['phase']}"})
                error = None if 200 <= resp.status_code < 300 else f"HTTP {resp.status_code}"
            except Exception as exc:  # network errors of any kind: retry later
                error = f"{type(exc).__name__}: {exc}"
            now = time.time()
            if error is None:
                self.store.mark_delivered(delivery_id, now)
                ok += 1
                continue
            tried = attempts + 1
            give_up = tried >= self.policy.max_attempts
            delay = min(self.policy.backoff_max_s, self.policy.backoff_initial_s * 2.0 ** (tried - 1))
            self.store.mark_failed_attempt(delivery_id, error, None if give_up else now + delay)
            log.warning("webhook %s for event %s failed (%s), attempt %d", url, payload["event_id"], error, tried)
        return ok
