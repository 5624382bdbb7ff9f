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


@dataclass(frozen=True)
class _Rows:
    """The wanted rows of one frame as plain Python values: the loops touch a handful of objects."""

    xys: list[tuple[float, float]]
    ids: list[int]
    scores: list[float]
    boxes: list[tuple[float, float, float, float]]
    names: list[str]
    starts: list[float]
    inside: list[bool]


def _box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def _rows(params: DwellParams, zone: Zone, tracked: Tracked, ts_s: float, since_ts: np.ndarray | None) -> _Rows:
    since = np.full(len(tracked), ts_s) if since_ts is None else np.minimum(np.asarray(since_ts, float), ts_s)
    sel = tracked
    if len(tracked):
        wanted = np.fromiter((c in params.classes for c in tracked.class_name), bool, len(tracked))
        if not wanted.all():
            sel, since = tracked.select(wanted), since[wanted]
    anchor_fn = anchors_centre if params.anchor == "centre" else anchors_bottom_centre
    anchors = anchor_fn(sel.xyxy)
    return _Rows(
        xys=[tuple(p) for p in anchors.tolist()], ids=sel.track_id.tolist(), scores=sel.score.tolist(),
        boxes=[tuple(b) for b in sel.xyxy.tolist()], names=[str(c) for c in sel.class_name],
        starts=since.tolist(), inside=zone.contains(anchors, width=sel.width, height=sel.height).tolist(),
    )


def _end_departed(params: DwellParams, state: DwellState, rows: _Rows, by_track: dict[int, int],
                  claimed: set[int]) -> list[Event]:
    """A tracked object seen outside the zone, away from where it stood, has left: end it now."""
    events: list[Event] = []
    for i, is_in in enumerate(rows.inside):
        key = by_track.get(rows.ids[i]) if not is_in and rows.ids[i] >= 0 else None
        if key is None or key not in state.episodes:
            continue
        ep = state.episodes[key]
        if _dist(rows.xys[i], ep.ref_xy) > params.max_motion_px:
            if ep.event_id:
                events.append(_ended(ep))
            del state.episodes[key]
        else:
            claimed.add(key)  # jitter across the border: still here, but not refreshed
    return events


def _nearest_free(state: DwellState, xy: tuple[float, float], radius: float, claimed: set[int]) -> int | None:
    best, best_d = None, radius
    for key, ep in state.episodes.items():
        if key in claimed:
            continue
        d = _dist(xy, ep.last_xy)
        if d <= best_d:
            best, best_d = key, d
    return best


def _is_duplicate(params: DwellParams, state: DwellState, rows: _Rows, i: int, claimed: set[int],
                  assignments: list[tuple[int, int]]) -> bool:
    """A second box of an object already matched in this frame. A row with a tracker id of its own
    is a different object unless its box nearly coincides with a matched one (two cars stopped
    side by side are two episodes, however close); id-less rows (static blobs) go by distance."""
    live = [state.episodes[k] for k in claimed if k in state.episodes]
    if rows.ids[i] >= 0:
        boxes = [rows.boxes[j] for j, _ in assignments] + [ep.bbox for ep in live]
        return any(_box_iou(rows.boxes[i], b) >= 0.7 for b in boxes)
    return any(_dist(rows.xys[i], ep.last_xy) <= params.reassociate_radius_px for ep in live)


def _associate(params: DwellParams, state: DwellState, rows: _Rows, by_track: dict[int, int], claimed: set[int],
               ts_s: float) -> list[tuple[int, int]]:
    """(row, episode key) pairs: by tracker id first, then by position (an ID switch or a
    re-appearance after occlusion at the same spot), else a new episode."""
    order = sorted((i for i, is_in in enumerate(rows.inside) if is_in), key=lambda i: -rows.scores[i])
    assignments: list[tuple[int, int]] = []
    pending: list[int] = []
    for i in order:
        key = by_track.get(rows.ids[i]) if rows.ids[i] >= 0 else None
        if key is not None and key in state.episodes and key not in claimed:
            claimed.add(key)
            assignments.append((i, key))
        else:
            pending.append(i)
    for i in pending:
        best = _nearest_free(state, rows.xys[i], params.reassociate_radius_px, claimed)
        if best is None and _is_duplicate(params, state, rows, i, claimed, assignments):
            continue
        if best is None:
            best = state.next_key
            state.next_key += 1
            state.episodes[best] = _Episode(
                track_id=rows.ids[i], ref_xy=rows.xys[i], last_xy=rows.xys[i], start_ts=rows.starts[i],
                last_seen_ts=ts_s, bbox=rows.boxes[i], score=rows.scores[i], class_name=rows.names[i],
            )
        claimed.add(best)
        assignments.append((i, best))
    return assignments


def _advance(params: DwellParams, zone: Zone, state: DwellState, rows: _Rows, assignments: list[tuple[int, int]],
             ts_s: float, rule: str, new_event_id) -> list[Event]:
    """Refresh matched episodes: restart the timer of one that moved, fire one that stood long enough."""
    events: list[Event] = []
    for i, key in assignments:
        ep = state.episodes[key]
        xy = rows.xys[i]
        if _dist(xy, ep.ref_xy) > params.max_motion_px:
            if ep.event_id:  # it drove off within the zone: that episode is over
                events.append(_ended(ep))
                ep.event_id, ep.fired_ts, ep.started_event = None, None, None
            ep.ref_xy, ep.start_ts = xy, ts_s  # moving: the timer restarts where it is now
        ep.last_xy, ep.last_seen_ts = xy, ts_s
        ep.track_id = rows.ids[i] if rows.ids[i] >= 0 else ep.track_id
        ep.bbox = rows.boxes[i]
        ep.score = max(ep.score, rows.scores[i]) if ep.event_id else rows.scores[i]
        ep.class_name = rows.names[i]
        if ep.event_id is None and ts_s - ep.start_ts >= params.min_dwell_s:
            ep.event_id, ep.fired_ts = new_event_id(), ts_s
            ep.started_event = Event(
                event_id=ep.event_id, camera_id=state.camera_id, rule=rule, zone_id=zone.zone_id,
                track_id=ep.track_id, started_ts=ep.start_ts, ended_ts=None, bbox=ep.bbox,
                score=ep.score, class_name=ep.class_name, phase="started", fired_ts=ts_s,
            )
            events.append(ep.started_event)
    return events


def _prune(params: DwellParams, state: DwellState, claimed: set[int], ts_s: float) -> list[Event]:
    """Not seen for longer than the grace period: gone (or left the camera). End and forget."""
    events: list[Event] = []
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
    Steps: end what left, associate, advance timers, prune.
    """
    events: list[Event] = []
    if state.last_ts is not None and ts_s < state.last_ts:
        # Video time went backwards (a looped file without an offset): end everything, start over.
        events.extend(_ended(ep) for ep in state.episodes.values() if ep.event_id)
        state.episodes.clear()
    state.last_ts = ts_s
    rows = _rows(params, zone, tracked, ts_s, since_ts)
    by_track = {ep.track_id: key for key, ep in state.episodes.items() if ep.track_id >= 0}
    claimed: set[int] = set()  # episodes that were seen in this frame (inside or just outside)
    events.extend(_end_departed(params, state, rows, by_track, claimed))
    assignments = _associate(params, state, rows, by_track, claimed, ts_s)
    events.extend(_advance(params, zone, state, rows, assignments, ts_s, rule, new_event_id))
    events.extend(_prune(params, state, claimed, ts_s))
    return events
