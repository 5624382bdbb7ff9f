"""Ops reviews of events: confirm (the alarm was right) or reject (a false alarm), with a note.

Reviews live in the event database (table `reviews`, one row per event: the latest review wins and
says who made it and when). `ReviewBook.list_events` filters events by camera, rule, time and review
state; the UI and `GET /v1/events?review=` use it.

>>> book = ReviewBook(store)
>>> book.review(event_id, "reject", note="shadow of the lamp post", reviewer="ops-ci")
>>> book.list_events(state="rejected")[0]["review"]["verdict"]
'rejected'
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from hub.errors import InvalidInput
from pipelines.events import EventStore

ACTIONS = {"confirm": "confirmed", "reject": "rejected"}
STATES = ("unreviewed", "confirmed", "rejected", "reviewed")
MAX_NOTE_CHARS = 1000

_SCHEMA = """CREATE TABLE IF NOT EXISTS reviews (
    event_id TEXT PRIMARY KEY, verdict TEXT NOT NULL, note TEXT, reviewer TEXT, reviewed_wall REAL NOT NULL)"""


@dataclass(frozen=True)
class Review:
    event_id: str
    verdict: str  # "confirmed" | "rejected"
    note: str | None
    reviewer: str | None
    reviewed_wall: float

    def to_dict(self) -> dict:
        return asdict(self)


class ReviewBook:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        store.execute(_SCHEMA)

    def review(self, event_id: str, action: str, *, note: str | None = None, reviewer: str | None = None,
               now_wall: float | None = None) -> Review:
        if action not in ACTIONS:
            raise InvalidInput(f"action must be one of {sorted(ACTIONS)}, got {action!r}", field="action")
        note = (note or "").strip() or None
        if note is not None and len(note) > MAX_NOTE_CHARS:
            raise InvalidInput(f"note is longer than {MAX_NOTE_CHARS} characters", field="note")
        self.store.get(event_id)  # NotFound (404) for an unknown event
        review = Review(event_id, ACTIONS[action], note, reviewer, time.time() if now_wall is None else now_wall)
        self.store.execute(
            "INSERT INTO reviews (event_id, verdict, note, reviewer, reviewed_wall) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(event_id) DO UPDATE SET verdict=excluded.verdict, note=excluded.note, "
            "reviewer=excluded.reviewer, reviewed_wall=excluded.reviewed_wall",
            (review.event_id, review.verdict, review.note, review.reviewer, review.reviewed_wall))
        return review

    def get(self, event_id: str) -> Review | None:
        rows = self.store.query("SELECT event_id, verdict, note, reviewer, reviewed_wall FROM reviews WHERE event_id=?",
                                (event_id,))
        return Review(*rows[0]) if rows else None

    def event(self, event_id: str) -> dict:
        review = self.get(event_id)
        return {**self.store.get(event_id).to_dict(), "review": review.to_dict() if review else None}

    def list_events(self, *, camera_id: str | None = None, rule: str | None = None, since_wall: float | None = None,
                    until_wall: float | None = None, state: str | None = None, limit: int = 100) -> list[dict]:
        """Started-or-ended events, newest first, each with its `review` (or None)."""
        if state is not None and state not in STATES:
            raise InvalidInput(f"review state must be one of {list(STATES)}", field="review")
        where, args = [], []
        for clause, value in (("e.camera_id=?", camera_id), ("e.rule=?", rule), ("e.created_wall>=?", since_wall),
                              ("e.created_wall<=?", until_wall)):
            if value is not None and value != "":
                where.append(clause)
                args.append(value)
        if state == "unreviewed":
            where.append("r.event_id IS NULL")
        elif state == "reviewed":
            where.append("r.event_id IS NOT NULL")
        elif state is not None:
            where.append("r.verdict=?")
            args.append(state)
        sql = ("SELECT e.event_id, r.verdict, r.note, r.reviewer, r.reviewed_wall FROM events e "
               "LEFT JOIN reviews r ON r.event_id = e.event_id")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY e.created_wall DESC, e.rowid DESC LIMIT ?"
        rows = self.store.query(sql, (*args, max(1, min(int(limit), 10_000))))
        out = []
        for event_id, verdict, note, reviewer, wall in rows:
            review = Review(event_id, verdict, note, reviewer, wall).to_dict() if verdict else None
            out.append({**self.store.get(event_id).to_dict(), "review": review})
        return out


def thumbnail_jpeg(image_rgb: np.ndarray, max_width: int = 320) -> bytes:
    """A small JPEG of a camera's latest analysed frame (the UI's camera list)."""
    import cv2

    from pipelines.decode import host_rgb
    from pipelines.events import encode_frame

    image_rgb = host_rgb(image_rgb)  # a frame decoded on the GPU is a CUDA tensor
    h, w = image_rgb.shape[:2]
    if w > max_width:
        image_rgb = cv2.resize(image_rgb, (max_width, max(1, round(h * max_width / w))), interpolation=cv2.INTER_AREA)
    return encode_frame(image_rgb, quality=75)
