"""What rules emit (`Event`) and the dwell machine both rules share: an object that stays in a
zone without moving more than `max_motion_px` for `min_dwell_s` of video time.

Episodes are keyed by tracker id, but re-associated by position when the id changes or the object
is briefly lost (`exit_grace_s`), so neither an ID switch nor a short occlusion restarts the timer.
State holds only live episodes (plus a hard cap), so it stays bounded on endless streams.

>>> state = DwellState(camera_id="cam17")
>>> events = update_dwell(params, zone, state, tracked, ts_s=42.0, rule="illegal_parking")
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field, replace

import numpy as np

from pipelines.track import Tracked
from pipelines.zones import Zone, anchors_bottom_centre, anchors_centre


@dataclass(frozen=True)
class Event:
    """One episode of a rule. `phase` is "started" when it fires and "ended" for the update when
    the episode is over (same `event_id`, `ended_ts` set). Times are the camera's video time.

    Example: `Event("9f2c...", "cam17", "illegal_parking", "kerb", 12, 30.2, None, (10, 20, 90, 80), 0.8)`.
    """

    event_id: str
    camera_id: str
    rule: str
    zone_id: str
    track_id: int
    started_ts: float
    ended_ts: float | None
    bbox: tuple[float, float, float, float]
    score: float
    class_name: str = ""
    phase: str = "started"
    fired_ts: float | None = None  # video time at which the rule decided (started_ts + dwell)
    model: tuple[str, str] | None = None  # (registered model name, version) whose detections raised it

    def to_dict(self) -> dict:
        return {
            "event_id": self.event_id, "camera_id": self.camera_id, "rule": self.rule,
            "zone_id": self.zone_id, "track_id": self.track_id, "started_ts": self.started_ts,
            "ended_ts": self.ended_ts, "bbox": list(self.bbox), "score": self.score,
            "class_name": self.class_name, "phase": self.phase, "fired_ts": self.fired_ts,
            "model": None if self.model is None else {"name": self.model[0], "version": self.model[1]},
        }

    def with_model(self, model: tuple[str, str]) -> Event:
        return replace(self, model=model)


@dataclass(frozen=True)
class DwellParams:
    """Timing and motion limits of a dwell rule, in video seconds and source pixels."""

    classes: frozenset[str]
    min_dwell_s: float
    max_motion_px: float = 20.0
    exit_grace_s: float = 3.0
    reassociate_px: float | None = None  # default: 2 x max_motion_px, at least 25 px
    anchor: str = "bottom_centre"  # or "centre" for objects lying on the road
    max_episodes: int = 256

    @property
    def reassociate_radius_px(self) -> float:
        if self.reassociate_px is not None:
            return self.reassociate_px
        return max(25.0, 2.0 * self.max_motion_px)


@dataclass
class _Episode:
    track_id: int
    ref_xy: tuple[float, float]  # where the object stood when the timer (re)started
    last_xy: tuple[float, float]
    start_ts: float
    last_seen_ts: float
    bbox: tuple[float, float, float, float]
    score: float
    class_name: str
    event_id: str | None = None  # set once the episode fired
    fired_ts: float | None = None
    started_event: Event | None = None


@dataclass
class DwellState:
    """Live episodes of one rule on one camera; nothing else accumulates."""

    camera_id: str
    episodes: dict[int, _Episode] = field(default_factory=dict)
    next_key: int = 0
    last_ts: float | None = None

    def __len__(self) -> int:
        return len(self.episodes)


def _dist(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def _ended(ep: _Episode) -> Event:
    assert ep.started_event is not None
    return replace(ep.started_event, ended_ts=ep.last_seen_ts, phase="ended",
                   bbox=ep.bbox, track_id=ep.track_id)


def update_dwell(
    params: DwellParams,
    zone: Zone,
    state: DwellState,
    tracked: Tracked,
    ts_s: float,
    *,
    rule: str,
    new_event_id=lambda: uuid.uuid4().hex,
    since_ts: np.ndarray | None = None,
) -> list[Event]:
    """Advance the dwell machine by one frame at video time `ts_s`; returns new and ended events.

    `tracked` may hold objects with `track_id == -1` (e.g. static blobs): those match by position only.
    `since_ts` (per row, optional): the object is known to have stood there since then (a static
    blob was already there in the previous analysed frame); a new episode starts at that time.
    """
    events: list[Event] = []
    if state.last_ts is not None and ts_s < state.last_ts:
        # Video time went backwards (a looped file without an offset): end everything, start over.
        events.extend(_ended(ep) for ep in state.episodes.values() if ep.event_id)
        state.episodes.clear()
    state.last_ts = ts_s

    since = np.full(len(tracked), ts_s) if since_ts is None else np.minimum(np.asarray(since_ts, float), ts_s)
    if len(tracked):
        wanted = np.fromiter((c in params.classes for c in tracked.class_name), bool, len(tracked))
        sel = tracked if wanted.all() else tracked.select(wanted)
        since = since if wanted.all() else since[wanted]
    else:
        sel = tracked
    anchor_fn = anchors_centre if params.anchor == "centre" else anchors_bottom_centre
    anchors = anchor_fn(sel.xyxy)
    inside = zone.contains(anchors, width=sel.width, height=sel.height).tolist()
    # Plain Python values per row: the loops below touch a handful of objects per frame.
    xys = [tuple(p) for p in anchors.tolist()]
    ids = sel.track_id.tolist()
    scores = sel.score.tolist()
    boxes = [tuple(b) for b in sel.xyxy.tolist()]
    names = [str(c) for c in sel.class_name]
    starts = since.tolist()
    by_track = {ep.track_id: key for key, ep in state.episodes.items() if ep.track_id >= 0}
    claimed: set[int] = set()  # episodes that were seen in this frame (inside or just outside)

    # A tracked object seen outside the zone, away from where it stood: it left; end now.
    for i, is_in in enumerate(inside):
        key = by_track.get(ids[i]) if not is_in and ids[i] >= 0 else None
        if key is None or key not in state.episodes:
            continue
        ep = state.episodes[key]
        if _dist(xys[i], ep.ref_xy) > params.max_motion_px:
            if ep.event_id:
                events.append(_ended(ep))
            del state.episodes[key]
        else:
            claimed.add(key)  # jitter across the border: still here, but not refreshed

    order = sorted((i for i, is_in in enumerate(inside) if is_in), key=lambda i: -scores[i])
    assignments: list[tuple[int, int]] = []  # (row, episode key)
    pending: list[int] = []
    for i in order:
        key = by_track.get(ids[i]) if ids[i] >= 0 else None
        if key is not None and key in state.episodes and key not in claimed:
            claimed.add(key)
            assignments.append((i, key))
        else:
            pending.append(i)

    radius = params.reassociate_radius_px
    for i in pending:
        xy = xys[i]
        best, best_d = None, radius
        for key, ep in state.episodes.items():
            if key in claimed:
                continue
            d = _dist(xy, ep.last_xy)
            if d <= best_d:
                best, best_d = key, d
        if best is not None:  # an ID switch or a re-appearance after occlusion at the same spot
            claimed.add(best)
            assignments.append((i, best))
            continue
        if any(_dist(xy, state.episodes[k].last_xy) <= radius for k in claimed if k in state.episodes):
            continue  # a duplicate box of an object already matched in this frame
        key = state.next_key
        state.next_key += 1
        state.episodes[key] = _Episode(
            track_id=ids[i], ref_xy=xy, last_xy=xy, start_ts=starts[i], last_seen_ts=ts_s,
            bbox=boxes[i], score=scores[i], class_name=names[i],
        )
        claimed.add(key)
        assignments.append((i, key))

    for i, key in assignments:
        ep = state.episodes[key]
        xy = xys[i]
        if _dist(xy, ep.ref_xy) > params.max_motion_px:
            if ep.event_id:  # it drove off within the zone: that episode is over
                events.append(_ended(ep))
                ep.event_id, ep.fired_ts, ep.started_event = None, None, None
            ep.ref_xy, ep.start_ts = xy, ts_s  # moving: the timer restarts where it is now
        ep.last_xy, ep.last_seen_ts = xy, ts_s
        ep.track_id = ids[i] if ids[i] >= 0 else ep.track_id
        ep.bbox = boxes[i]
        ep.score = max(ep.score, scores[i]) if ep.event_id else scores[i]
        ep.class_name = names[i]
        if ep.event_id is None and ts_s - ep.start_ts >= params.min_dwell_s:
            ep.event_id, ep.fired_ts = new_event_id(), ts_s
            ep.started_event = Event(
                event_id=ep.event_id, camera_id=state.camera_id, rule=rule, zone_id=zone.zone_id,
                track_id=ep.track_id, started_ts=ep.start_ts, ended_ts=None, bbox=ep.bbox,
                score=ep.score, class_name=ep.class_name, phase="started", fired_ts=ts_s,
            )
            events.append(ep.started_event)

    # Not seen for longer than the grace period: gone (or left the camera). End and forget.
    for key in [k for k, ep in state.episodes.items() if k not in claimed]:
        ep = state.episodes[key]
        if ts_s - ep.last_seen_ts > params.exit_grace_s:
            if ep.event_id:
                events.append(_ended(ep))
            del state.episodes[key]

    while len(state.episodes) > params.max_episodes:  # a hard cap against pathological scenes
        key = min(state.episodes, key=lambda k: state.episodes[k].last_seen_ts)
        ep = state.episodes.pop(key)
        if ep.event_id:
            events.append(_ended(ep))
    return events
