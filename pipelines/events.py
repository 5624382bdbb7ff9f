"""Durable events: a SQLite store with JPEG snapshots on disk, written **before** any delivery, and
webhook delivery with retry and back-off driven from that store (so nothing is lost on restart).

Layout under `<data_dir>/events/`: `events.db` and `snapshots/<camera_id>/<event_id>.jpg`.
Every write of an event also appends to a feed (`seq`), which `hub events tail` and the SSE
endpoint read in order; every webhook gets one delivery row per event phase.

>>> store = EventStore.open()                      # under get_settings().data_dir
>>> store.record(event, frame.image, webhooks=["http://ops.example/hook"])
>>> store.list_events(camera_id="cam17", rule="illegal_parking", since_wall_s=0)
>>> store.open_events(camera_id="cam17")            # episodes not ended yet (continued after a restart)

Webhook delivery (per-receiver queues, dead letters, signing, outbound policy) is in `pipelines/webhooks.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
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
    class_name TEXT, fired_ts REAL, snapshot TEXT, created_wall REAL NOT NULL, updated_wall REAL NOT NULL,
    end_reason TEXT, model TEXT
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
CREATE INDEX IF NOT EXISTS deliveries_by_url ON deliveries (url, failed, delivered_wall, id);
"""

# Why an episode ended: the object left (the rule's own end), the camera was removed, its stream
# ended, it lasted longer than the configured maximum, or it was open before a restart and nothing
# matching it was seen again.
END_REASONS = ("left", "camera_removed", "stream_ended", "expired", "restart_unmatched")

_COLUMNS = ("event_id", "camera_id", "rule", "zone_id", "track_id", "started_ts", "ended_ts", "bbox",
            "score", "class_name", "fired_ts", "snapshot", "created_wall", "updated_wall", "end_reason", "model")


@dataclass(frozen=True)
class StoredEvent:
    """An event as stored: the rule's fields plus where its snapshot is and when it was written."""

    event: Event
    snapshot: str | None
    created_wall: float
    updated_wall: float
    seq: int = 0  # position in the feed of the write that produced this view (0: it changed nothing)
    end_reason: str | None = None  # one of END_REASONS once ended

    def to_dict(self) -> dict:
        out = self.event.to_dict()
        out.update(has_snapshot=self.snapshot is not None, created_wall=self.created_wall,
                   updated_wall=self.updated_wall, seq=self.seq, end_reason=self.end_reason)
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

    def __init__(self, root: Path, *, max_db_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.snapshot_dir = self.root / "snapshots"
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / "events.db", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an event acknowledged is an event on disk
        self._db.executescript(_SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(events)")}
        if "end_reason" not in columns:
            self._db.execute("ALTER TABLE events ADD COLUMN end_reason TEXT")  # a store from before reasons
        if "model" not in columns:
            self._db.execute("ALTER TABLE events ADD COLUMN model TEXT")  # a store from before model versions
        self.set_max_db_bytes(max_db_bytes)

    @classmethod
    def open(cls, data_dir: Path | None = None, *, max_db_bytes: int | None = None) -> EventStore:
        if data_dir is None:
            from hub.settings import get_settings

            data_dir = get_settings().data_dir
        return cls(Path(data_dir) / "events", max_db_bytes=max_db_bytes)

    def set_max_db_bytes(self, max_db_bytes: int | None) -> None:
        """A hard quota on the database (SQLite `max_page_count`): past it a write fails with
        "database or disk is full", exactly like a full disk, and is spilled (`pipelines.spill`)."""
        with self._lock:
            page = self._db.execute("PRAGMA page_size").fetchone()[0]
            pages = 2**31 - 2 if max_db_bytes is None else max(1, int(max_db_bytes) // page)
            self._db.execute(f"PRAGMA max_page_count = {int(pages)}")

    def db_bytes(self) -> int:
        """Bytes the database's live pages take (free pages are reused before the file grows)."""
        with self._lock:
            count = self._db.execute("PRAGMA page_count").fetchone()[0]
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            page = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int((count - free) * page)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing ----------------------------------------------------------------------------------
    def record(self, event: Event, image_rgb: np.ndarray | None = None, webhooks: Sequence[str] = (),
               now_wall: float | None = None, *, snapshot_jpeg: bytes | None = None,
               frame_jpeg: bytes | None = None, end_reason: str | None = None) -> StoredEvent:
        """Store a started event (with its snapshot) or an ended update, queue webhook deliveries,
        and only then return: delivery always reads from here.

        Each phase is written once: a `started` of a stored event, or an `ended` of an episode
        that has ended already (a write retried from the spill, a rule's own end of an episode the
        hub ended as `expired`), changes nothing, queues nothing and returns the stored view with
        `seq=0`. `snapshot_jpeg` is an already drawn snapshot (`encode_snapshot`), `frame_jpeg` the
        already encoded clean frame (`encode_frame`); both are made from `image_rgb` when not given."""
        now = time.time() if now_wall is None else now_wall
        if end_reason is not None and end_reason not in END_REASONS:
            raise ValueError(f"end_reason must be one of {END_REASONS}")
        snapshot = None
        if event.phase == "started":
            if snapshot_jpeg is None and image_rgb is not None:
                snapshot_jpeg = encode_snapshot(event, image_rgb)
            if snapshot_jpeg is not None:
                snapshot = self._write_snapshot(event, snapshot_jpeg)
            if frame_jpeg is None and image_rgb is not None:
                frame_jpeg = encode_frame(image_rgb)
            if frame_jpeg is not None:  # the frame without drawings: what a reviewed event exports for training
                self._write_snapshot(event, frame_jpeg, suffix=FRAME_SUFFIX)
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            seq = self._write_phase(event, snapshot, now, end_reason or "left")
            if seq:
                self._db.executemany(
                    "INSERT INTO deliveries (seq, url, next_attempt_wall) VALUES (?, ?, ?)",
                    [(seq, url, now) for url in webhooks],
                )
        return replace(self.get(event.event_id), seq=seq or 0)

    def _write_phase(self, event: Event, snapshot: str | None, now: float, end_reason: str) -> int | None:
        """The row and feed entry of one phase (inside the caller's transaction); None: already there."""
        row = self._db.execute("SELECT ended_ts IS NOT NULL FROM events WHERE event_id=?", (event.event_id,)).fetchone()
        if event.phase == "started":
            if row is not None:
                return None
            self._insert(event, snapshot, now, None)
        elif row is None:  # an end whose start was never stored (store wiped): keep it whole
            self._insert(event, None, now, end_reason)
        elif row[0]:
            return None
        else:
            self._db.execute("UPDATE events SET ended_ts=?, end_reason=?, updated_wall=? WHERE event_id=?",
                             (event.ended_ts, end_reason, now, event.event_id))
        return self._db.execute(
            "INSERT INTO feed (event_id, phase, wall) VALUES (?, ?, ?)", (event.event_id, event.phase, now)
        ).lastrowid

    def _insert(self, event: Event, snapshot: str | None, now: float, end_reason: str | None) -> None:
        self._db.execute(
            f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
            (event.event_id, event.camera_id, event.rule, event.zone_id, event.track_id,
             event.started_ts, event.ended_ts, json.dumps(list(event.bbox)), event.score,
             event.class_name, event.fired_ts, snapshot, now, now, end_reason,
             None if event.model is None else json.dumps(list(event.model))),
        )

    def _write_snapshot(self, event: Event, data: bytes, suffix: str = ".jpg") -> str:
        rel = Path(_safe(event.camera_id)) / f"{_safe(event.event_id)}{suffix}"
        path = self.snapshot_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:  # durable before the row that points at it is committed
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)  # atomic: a reader never sees half a JPEG
        fsync_dir(path.parent)
        return rel.as_posix()

    # -- raw access for the delivery queue and retention (one lock, one connection) ---------------
    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def execute(self, sql: str, args: tuple = ()) -> int:
        """One write in its own transaction; returns the number of rows it changed."""
        with self._lock, self._db:
            return self._db.execute(sql, args).rowcount

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
            fired_ts=d["fired_ts"], model=tuple(json.loads(d["model"])) if d["model"] else None,
        )
        return StoredEvent(event, d["snapshot"], d["created_wall"], d["updated_wall"], seq,
                           None if ended is None else d["end_reason"])

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

    def feed_item(self, seq: int) -> StoredEvent:
        """The feed entry `seq`: the event as that write showed it (a delivery's payload)."""
        cols = ", ".join(f"e.{c}" for c in _COLUMNS)
        with self._lock:
            row = self._db.execute(f"SELECT f.seq, f.phase, {cols} FROM feed f JOIN events e ON e.event_id = f.event_id "
                                   "WHERE f.seq = ?", (int(seq),)).fetchone()
        if row is None:
            raise NotFound(f"no feed entry {seq}")
        return self._row_to_stored(row[2:], seq=row[0], phase=row[1])

    def open_events(self, camera_id: str | None = None) -> list[StoredEvent]:
        """Episodes that started and have not ended, oldest first (what a restart must continue)."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM events WHERE ended_ts IS NULL"
        args: tuple = ()
        if camera_id is not None:
            sql, args = sql + " AND camera_id=?", (camera_id,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created_wall, rowid", args).fetchall()
        return [self._row_to_stored(r) for r in rows]

    def last_seq(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(seq) FROM feed").fetchone()
        return int(row[0] or 0)

    def snapshot_bytes(self, event_id: str, *, clean: bool = False) -> bytes:
        """The snapshot JPEG (box and label drawn), or with `clean=True` the frame without drawings."""
        stored = self.get(event_id)
        if not stored.snapshot:
            raise NotFound(f"event {event_id!r} has no snapshot")
        path = (self.snapshot_dir / (frame_path(stored.snapshot) if clean else stored.snapshot)).resolve()
        if self.snapshot_dir.resolve() not in path.parents or not path.exists():
            raise NotFound(f"snapshot of event {event_id!r} is missing")
        return path.read_bytes()

    # -- deliveries (the queue per receiver is `pipelines.webhooks.DeliveryQueue`) -------------------
    def delivery_counts(self) -> dict[str, int]:
        with self._lock:
            pending, delivered, failed = self._db.execute(
                "SELECT SUM(delivered_wall IS NULL AND failed=0), SUM(delivered_wall IS NOT NULL), SUM(failed) "
                "FROM deliveries"
            ).fetchone()
        return {"pending": int(pending or 0), "delivered": int(delivered or 0), "failed": int(failed or 0)}


def encode_snapshot(event: Event, image_rgb: np.ndarray) -> bytes:
    """The snapshot of a started event: the frame as JPEG with its box and label drawn."""
    return draw_snapshot(image_rgb, event.bbox, f"{event.rule} {event.class_name} {event.score:.2f}".strip())


FRAME_SUFFIX = ".frame.jpg"


def frame_path(snapshot: str) -> str:
    """Where the clean frame of a snapshot (`cam/<event_id>.jpg`) is kept: `cam/<event_id>.frame.jpg`."""
    return snapshot.removesuffix(".jpg") + FRAME_SUFFIX


def encode_frame(image_rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - see draw_snapshot
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable (the directory entry is data too)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the file itself is synced
    finally:
        os.close(fd)


def _safe(name: str) -> str:
    """A path component that cannot climb out of the snapshot folder."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".")
    return cleaned or "_"


SIGNATURE_HEADER = "X-Hub-Signature-256"
TIMESTAMP_HEADER = "X-Hub-Timestamp"


def sign_webhook(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of "<timestamp>." + body>`: the timestamp is signed with the body, so
    a receiver that refuses old timestamps (say, older than 5 minutes) refuses replays."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_webhook(secret: str, body: bytes, signature: str, timestamp: str, *, now_s: float | None = None,
                   tolerance_s: float = 300.0) -> bool:
    """What a receiver does (the README has the same in a few lines): a fresh timestamp and a
    signature that matches, compared in constant time."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now_s is None else now_s) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign_webhook(secret, ts, body), signature or "")


# The webhook sender (per-receiver queues, retries, dead letters, `_post` with these signatures)
# lives in pipelines/webhooks.py.
