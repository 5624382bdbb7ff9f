"""Stops from filtered road-plane speed: a vehicle is *stopped* when its Kalman-filtered speed
stays under `max_speed_kmh` for `min_stopped_s`; a stop inside the zone that lasts longer than the
zone's `limit_s` is an offence, dated from the moment the vehicle stopped.

Speed, not pixel displacement, so a far car creeping 16 px tall and a near one jittering by 24 px
are told apart (`motion.py`). An episode belongs to a spot on the road, not to a tracker id: a new
id that appears where an open stop's vehicle was (within `reassociate_m` plus the detection's noise, boxes overlapping) takes
the stop over with its timer and the old filter's velocity, so a track that splits into several
ids costs nothing. Two vehicles side by side are two tracks, so two episodes.

>>> state = StopState("cam17", RoadMotion(MotionParams(), calibration))
>>> events = update_stop(params, zone, state, tracked, ts_s=42.0, rule="illegal_parking")
>>> active_stop_alarms(state)    # (event_id, bbox) of the alarms that are on in this frame
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field, replace
from itertools import pairwise

import numpy as np

from pipelines.calibration import MIN_WIDTH_M
from pipelines.rules.base import Event
from pipelines.rules.motion import MotionEstimate, RoadMotion
from pipelines.track import Tracked
from pipelines.zones import Zone, anchors_bottom_centre

KMH_PER_M_S = 3.6
MAX_FORMER_IDS = 8  # ByteTrack swaps ids back and forth between two or three overlapping boxes


@dataclass(frozen=True)
class StopParams:
    """`limit_s`: how long a stop may last in the zone; `max_speed_kmh` / `min_stopped_s`: what a
    stop is; `resume_s`: how long it must drive (above the speed limit) to have left; `exit_grace_s`:
    how long an unseen stop is kept for its vehicle to come back (occlusion, a new track id);
    `leave_m`: how far from where it last stood still a stopped vehicle may roll (beyond its
    detection noise) before it has left, however slowly it drives (about three car lengths: far
    away the filtered position of a standing vehicle wanders by metres, and a tighter 5 m split
    real stops on RoadTrack); `edge_margin_frac`: a box this close
    (as a fraction of the frame) to the left, right or bottom edge is cut off by the frame, so its
    bottom centre is the frame's edge, not the vehicle's wheels, and it is not used;
    `min_mean_score`: a stop fires only once the mean detection score of its boxes reaches this (a
    vehicle seen only through boxes the detector itself doubts is no evidence of a stop; RoadTrack's
    published method uses the same 0.2 floor); `min_wide_frac`: with a calibration, a stop fires only
    once this fraction of its boxes are as wide on the road plane as the narrowest vehicle of their
    class (`calibration.MIN_WIDTH_M`; a median, robust to a few boxes straddling two vehicles): a
    box 1.4 m wide on the road is no truck, whatever the detector named it (0 turns it off);
    `max_overlap_frac`: a stop fires only while most of its boxes lie less than this much (of their
    own area) over the boxes of vehicles whose stops already fired, seen in the same frame: two
    vehicles cannot stand in one place, so a box lying three quarters over alarmed vehicles adds no
    new vehicle, it is a duplicate detection straddling them or a part of one (1 turns it off)."""

    classes: frozenset[str]
    limit_s: float
    max_speed_kmh: float = 10.0
    min_stopped_s: float = 2.0
    resume_s: float = 1.0
    resume_speed_kmh: float | None = None  # default 2 x max_speed_kmh: hysteresis against noisy speed
    reassociate_m: float = 4.0
    min_reassociate_iou: float = 0.1
    exit_grace_s: float = 5.0
    leave_m: float = 15.0
    edge_margin_frac: float = 0.02
    min_mean_score: float = 0.2
    min_wide_frac: float = 0.5
    max_overlap_frac: float = 0.75
    max_episodes: int = 256

    @property
    def fire_after_s(self) -> float:
        return max(self.min_stopped_s, self.limit_s)

    @property
    def resume_kmh(self) -> float:
        return self.resume_speed_kmh if self.resume_speed_kmh is not None else 2.0 * self.max_speed_kmh


@dataclass
class _Stop:
    track_id: int
    onset_ts: float  # when its filtered speed went under the limit
    last_seen_ts: float
    pos: np.ndarray  # road position (filter units) where it was last seen
    units_per_m: float
    bbox: tuple[float, float, float, float]
    score: float
    class_name: str
    still_pos: np.ndarray  # where it last went slower than the stop speed
    score_sum: float = 0.0  # of the detection scores of all its boxes, with...
    boxes_seen: int = 0  # ...how many there were
    wide_boxes: int = 0  # boxes at least as wide on the road as the narrowest vehicle of their class...
    widths_seen: int = 0  # ...of those with a road width (none without a calibration)
    covered: float = 0.0  # how much of the time lately its box lay mostly over vehicles already alarmed
    former_ids: list[int] = field(default_factory=list)  # its vehicle's earlier track ids (the last few)
    in_zone: bool = False
    moving_since_ts: float | None = None
    event_id: str | None = None
    started_event: Event | None = None


@dataclass
class StopState:
    """Per camera and rule: one filter per live track and the open stop episodes (bounded)."""

    camera_id: str
    motion: RoadMotion
    stops: dict[int, _Stop] = field(default_factory=dict)
    next_key: int = 0
    last_ts: float | None = None

    def __len__(self) -> int:
        return len(self.stops)


@dataclass(frozen=True)
class _Frame:
    """The wanted rows of one frame with their road-plane estimate, as plain Python values."""

    ids: list[int]
    boxes: list[tuple[float, float, float, float]]
    scores: list[float]
    names: list[str]
    inside: list[bool]
    est: MotionEstimate


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _ended(stop: _Stop) -> Event:
    assert stop.started_event is not None
    return replace(stop.started_event, ended_ts=stop.last_seen_ts, phase="ended", bbox=stop.bbox,
                   track_id=stop.track_id)


def _cut_off(xyxy: np.ndarray, width: int, height: int, margin_frac: float) -> np.ndarray:
    """Boxes that touch the left, right or bottom edge of the frame (the top edge cuts only the
    vehicle's roof): a vehicle leaving the view at the bottom keeps its box's bottom pinned to the
    edge, which reads as standing still."""
    mx, my = margin_frac * width, margin_frac * height
    return (xyxy[:, 0] <= mx) | (xyxy[:, 2] >= width - mx) | (xyxy[:, 3] >= height - my)


def _observe(params: StopParams, zone: Zone, state: StopState, tracked: Tracked, ts_s: float) -> _Frame:
    if len(tracked):
        wanted = np.fromiter((c in params.classes for c in tracked.class_name), bool, len(tracked))
        wanted &= ~_cut_off(tracked.xyxy, tracked.width, tracked.height, params.edge_margin_frac)
        tracked = tracked if wanted.all() else tracked.select(wanted)
    est = state.motion.update(tracked.track_id.tolist(), tracked.xyxy, [str(c) for c in tracked.class_name], ts_s)
    inside = zone.contains(anchors_bottom_centre(tracked.xyxy), width=tracked.width, height=tracked.height)
    return _Frame(ids=tracked.track_id.tolist(), boxes=[tuple(b) for b in tracked.xyxy.tolist()],
                  scores=tracked.score.tolist(), names=[str(c) for c in tracked.class_name],
                  inside=inside.tolist(), est=est)


def _speed_state(params: StopParams, frame: _Frame, i: int) -> str:
    """"slow", "fast" or "unknown" (a new track whose filter has not settled yet)."""
    speed_kmh = frame.est.speed_m_s[i] * KMH_PER_M_S
    sd_kmh = frame.est.speed_sd_m_s[i] * KMH_PER_M_S
    if not np.isfinite(speed_kmh) or sd_kmh > params.max_speed_kmh:
        return "unknown"
    return "slow" if speed_kmh < params.max_speed_kmh else "fast"


def _driving(params: StopParams, frame: _Frame, i: int, fired: bool) -> bool:
    """Faster than a stop: over `max_speed_kmh` while the stop is not yet certain, over `resume_kmh`
    once it fired (above the stop limit: a creeping or jittering stopped vehicle does not flicker
    between stopped and driving)."""
    speed_kmh = frame.est.speed_m_s[i] * KMH_PER_M_S
    limit_kmh = params.resume_kmh if fired else params.max_speed_kmh
    return bool(np.isfinite(speed_kmh)) and speed_kmh > limit_kmh \
        and frame.est.speed_sd_m_s[i] * KMH_PER_M_S <= params.max_speed_kmh


def _rolled_away(params: StopParams, stop: _Stop, frame: _Frame, i: int) -> bool:
    """Further than `leave_m` (plus three times the detection's noise) from where it last stood
    still: a vehicle pulling away slowly stays under the resume speed for many seconds, but it is no
    longer standing where it stopped."""
    if frame.est.speed_m_s[i] * KMH_PER_M_S < params.max_speed_kmh:
        stop.still_pos = frame.est.pos[i].copy()
        return False
    gate = params.leave_m * stop.units_per_m + 3.0 * frame.est.pos_sd[i]
    return float(np.hypot(*(frame.est.pos[i] - stop.still_pos))) > gate


def _take_over(params: StopParams, state: StopState, frame: _Frame, i: int, free: set[int]) -> int | None:
    """The open stop a new track id continues (same road spot, overlapping box), if any. Only an id
    first seen after the stop's vehicle was last seen can be that vehicle (one already driving
    elsewhere meanwhile is another vehicle passing the spot), or one of the ids the stop's vehicle
    itself had before: ByteTrack swaps ids between overlapping boxes and back, and the returning id
    would otherwise open a second episode on the same vehicle."""
    best, best_d = None, float("inf")
    pos = frame.est.pos[i]
    for key in free:
        stop = state.stops[key]
        if frame.est.born_ts[i] < stop.last_seen_ts and frame.ids[i] not in stop.former_ids:
            continue
        # Far away one pixel spans metres: the gate widens with the detection's own noise.
        radius = params.reassociate_m * stop.units_per_m + 3.0 * frame.est.pos_sd[i]
        d = float(np.hypot(*(pos - stop.pos)))
        if d <= radius and d < best_d and _iou(frame.boxes[i], stop.bbox) >= params.min_reassociate_iou:
            best, best_d = key, d
    return best


def _associate(params: StopParams, state: StopState, frame: _Frame, ts_s: float) -> list[tuple[int, int]]:
    """(row, stop key) pairs: a track's own stop, a stop it takes over, or a new stop when it slows."""
    by_track = {stop.track_id: key for key, stop in state.stops.items()}
    seen = set(frame.ids)
    free = {key for key, stop in state.stops.items() if stop.track_id not in seen}  # their vehicle is unseen
    pairs: list[tuple[int, int]] = []
    for i in sorted(range(len(frame.ids)), key=lambda i: -frame.scores[i]):
        if not np.isfinite(frame.est.pos[i]).all():
            continue
        key = by_track.get(frame.ids[i])
        speed = _speed_state(params, frame, i)
        if key is None and speed != "fast":
            key = _take_over(params, state, frame, i, free)
            if key is not None:
                free.discard(key)
                state.motion.adopt(frame.ids[i], state.stops[key].track_id)
        if key is None and speed == "slow":
            key = state.next_key
            state.next_key += 1
            state.stops[key] = _Stop(
                track_id=frame.ids[i], onset_ts=ts_s, last_seen_ts=ts_s, pos=frame.est.pos[i].copy(),
                units_per_m=float(frame.est.units_per_m[i]), bbox=frame.boxes[i], score=frame.scores[i],
                class_name=frame.names[i], still_pos=frame.est.pos[i].copy())
        if key is not None:
            pairs.append((i, key))
    return pairs


def _add_width(stop: _Stop, frame: _Frame, i: int) -> None:
    narrowest_m = MIN_WIDTH_M.get(frame.names[i])
    width_m = frame.est.width_m[i]
    if narrowest_m and np.isfinite(width_m):
        stop.wide_boxes += int(width_m >= narrowest_m)
        stop.widths_seen += 1


def _covered_frac(box: tuple[float, ...], others: list[tuple[float, ...]]) -> float:
    """The fraction of `box`'s area that lies inside the union of `others` (exact: the boxes' edges
    cut `box` into cells, each wholly inside or outside every box)."""
    x1, y1, x2, y2 = box
    area = (x2 - x1) * (y2 - y1)
    cut = [(max(x1, a[0]), max(y1, a[1]), min(x2, a[2]), min(y2, a[3])) for a in others]
    cut = [c for c in cut if c[2] > c[0] and c[3] > c[1]]
    if area <= 0 or not cut:
        return 0.0
    xs = sorted({x1, x2, *(c[0] for c in cut), *(c[2] for c in cut)})
    ys = sorted({y1, y2, *(c[1] for c in cut), *(c[3] for c in cut)})
    covered = 0.0
    for xa, xb in pairwise(xs):
        for ya, yb in pairwise(ys):
            cx, cy = (xa + xb) / 2, (ya + yb) / 2
            if any(c[0] <= cx <= c[2] and c[1] <= cy <= c[3] for c in cut):
                covered += (xb - xa) * (yb - ya)
    return covered / area


def _add_cover(params: StopParams, stop: _Stop, box: tuple[float, ...], alarmed: list[tuple[float, ...]],
               ts_s: float) -> None:
    """Average (over about the last `min_stopped_s`, weighted by time) of whether its box lay mostly
    over the boxes of vehicles already alarmed. Recent boxes count, not all since the stop began: a
    vehicle held while its box lay over an alarmed one fires a few seconds after that one has left,
    not as long again."""
    over = float(_covered_frac(box, alarmed) > params.max_overlap_frac)
    if stop.boxes_seen == 0:
        stop.covered = over
        return
    weight = 1.0 - math.exp(-max(ts_s - stop.last_seen_ts, 0.0) / max(params.min_stopped_s, 1e-3))
    stop.covered += weight * (over - stop.covered)


def _evidence(params: StopParams, stop: _Stop) -> bool:
    """Its boxes, on the whole, are a vehicle: the detector is not doubtful of them (mean score),
    on a calibrated camera most are as wide on the road as a vehicle of their class, and most do not
    lie over vehicles already alarmed."""
    sure = stop.score_sum >= params.min_mean_score * stop.boxes_seen
    wide = stop.widths_seen == 0 or stop.wide_boxes >= params.min_wide_frac * stop.widths_seen
    alone = stop.covered < 0.5
    return sure and wide and alone


def _advance(params: StopParams, zone: Zone, state: StopState, frame: _Frame, pairs: list[tuple[int, int]],
             ts_s: float, rule: str, new_event_id) -> list[Event]:
    """Refresh each matched stop; end it when its vehicle drove on; fire it when it lasted long enough."""
    events: list[Event] = []
    alarmed = [i for i, key in pairs if state.stops[key].event_id]  # vehicles already alarmed, this frame
    for i, key in pairs:
        stop = state.stops[key]
        if stop.event_id is None:
            _add_cover(params, stop, frame.boxes[i], [frame.boxes[j] for j in alarmed if j != i], ts_s)
        if frame.ids[i] != stop.track_id:
            stop.former_ids = [*stop.former_ids, stop.track_id][-MAX_FORMER_IDS:]
        stop.track_id, stop.last_seen_ts, stop.bbox = frame.ids[i], ts_s, frame.boxes[i]
        stop.pos, stop.units_per_m = frame.est.pos[i].copy(), float(frame.est.units_per_m[i])
        stop.in_zone, stop.class_name = frame.inside[i], frame.names[i]
        stop.score = max(stop.score, frame.scores[i]) if stop.event_id else frame.scores[i]
        stop.score_sum, stop.boxes_seen = stop.score_sum + frame.scores[i], stop.boxes_seen + 1
        _add_width(stop, frame, i)
        if _rolled_away(params, stop, frame, i):
            stop.moving_since_ts = stop.moving_since_ts if stop.moving_since_ts is not None else ts_s
            if stop.event_id:
                stop.last_seen_ts = stop.moving_since_ts
                events.append(_ended(stop))
            del state.stops[key]
            continue
        if _driving(params, frame, i, fired=stop.event_id is not None):
            stop.moving_since_ts = stop.moving_since_ts if stop.moving_since_ts is not None else ts_s
            if ts_s - stop.moving_since_ts >= params.resume_s:  # it drove on: the stop is over
                if stop.event_id:  # dated from when it started to drive, as the start is from the stop
                    stop.last_seen_ts = stop.moving_since_ts
                    events.append(_ended(stop))
                del state.stops[key]
                continue
        else:
            stop.moving_since_ts = None
        if stop.event_id is None and stop.in_zone and stop.moving_since_ts is None \
                and ts_s - stop.onset_ts >= params.fire_after_s and _evidence(params, stop):
            stop.event_id = new_event_id()
            stop.started_event = Event(
                event_id=stop.event_id, camera_id=state.camera_id, rule=rule, zone_id=zone.zone_id,
                track_id=stop.track_id, started_ts=stop.onset_ts, ended_ts=None, bbox=stop.bbox,
                score=stop.score, class_name=stop.class_name, phase="started", fired_ts=ts_s)
            events.append(stop.started_event)
    return events


def _prune(params: StopParams, state: StopState, ts_s: float) -> list[Event]:
    """End stops whose vehicle has been unseen past the grace period; cap the live ones."""
    events: list[Event] = []
    gone = [k for k, s in state.stops.items() if ts_s - s.last_seen_ts > params.exit_grace_s]
    while len(state.stops) - len(gone) > params.max_episodes:  # a hard cap against pathological scenes
        gone.append(min((k for k in state.stops if k not in gone), key=lambda k: state.stops[k].last_seen_ts))
    for key in gone:
        stop = state.stops.pop(key)
        if stop.event_id:
            events.append(_ended(stop))
    return events


def update_stop(params: StopParams, zone: Zone, state: StopState, tracked: Tracked, ts_s: float, *,
                rule: str, new_event_id=lambda: uuid.uuid4().hex) -> list[Event]:
    """Advance by one frame at video time `ts_s`; returns the events that started or ended."""
    events: list[Event] = []
    if state.last_ts is not None and ts_s < state.last_ts:
        # Video time went backwards (a looped file without an offset): end everything, start over.
        events.extend(_ended(s) for s in state.stops.values() if s.event_id)
        state.stops.clear()
        state.motion.reset()
    state.last_ts = ts_s
    frame = _observe(params, zone, state, tracked, ts_s)
    pairs = _associate(params, state, frame, ts_s)
    events.extend(_advance(params, zone, state, frame, pairs, ts_s, rule, new_event_id))
    events.extend(_prune(params, state, ts_s))
    return events


def active_stop_alarms(state: StopState) -> list[tuple[str, tuple[float, float, float, float]]]:
    """(event_id, box) of every fired stop whose vehicle is seen in the latest frame."""
    return [(s.event_id, s.bbox) for s in state.stops.values() if s.event_id and s.last_seen_ts == state.last_ts]
