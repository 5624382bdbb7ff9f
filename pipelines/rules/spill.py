"""Debris / spill on the carriageway: an object that appears in the road zone and stays static for
`min_s` of video time. Two sources of candidates feed the same dwell machine:

- detections of debris classes, where the camera's detector has such a class (`classes`);
- a model-free static-change detector (`static`): pixels that differ from a slowly updated
  background but not from the previous frame are "new and still"; their blobs, minus anything a
  detector sees as a vehicle or person, are candidates. It works without any debris class.

>>> rule = SpillRule(zone=road, min_s=10.0)
>>> state = new_state(rule, camera_id="cam3")
>>> events = update(rule, state, tracked, ts_s, image=frame_rgb)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from pipelines.decode import device_resize, host_rgb
from pipelines.rules.base import DwellParams, DwellState, Event, update_dwell
from pipelines.track import Tracked
from pipelines.zones import VEHICLE_CLASSES, Zone

KIND = "spill"
STATIC_CLASS = "static_object"


@dataclass(frozen=True)
class StaticChange:
    """Settings of the model-free detector. Sizes are fractions of the frame; times are video time.

    The background starts as the per-pixel median of the first `warmup_s` (moving traffic is not
    in a median) and then follows the scene as a running approximate median that moves at most
    `background_rate_per_s` levels (0..255) per second: lighting drifts in, passing cars do not.
    Differences are taken per colour channel, so an orange object on grey asphalt counts.
    `absorb_after_s`: a change static this long is taken into the background (its episode ends).
    """

    enabled: bool = True
    interval_s: float = 0.5  # analyse at most this often: debris lies for seconds, not frames
    work_width_px: int = 320
    diff_threshold: float = 28.0
    background_rate_per_s: float = 2.0
    warmup_s: float = 3.0
    warmup_max_frames: int = 40
    max_shift_px: float = 1.0  # camera moved (pan, shake) by more than this at work size: relearn
    min_area_frac: float = 0.0008
    max_area_frac: float = 0.05
    absorb_after_s: float = 900.0
    exclude_classes: frozenset[str] = VEHICLE_CLASSES | {"person", "bicycle"}
    exclude_coverage: float = 0.3


@dataclass(frozen=True)
class SpillRule:
    """A carriageway zone watched for static new objects. Example: `SpillRule(road, min_s=10)`."""

    zone: Zone
    min_s: float = 10.0
    max_motion_px: float = 20.0
    exit_grace_s: float = 3.0
    classes: frozenset[str] = frozenset()  # detector classes that are debris (none in COCO)
    static: StaticChange = field(default_factory=StaticChange)

    @property
    def params(self) -> DwellParams:
        return DwellParams(
            classes=self.classes | ({STATIC_CLASS} if self.static.enabled else set()),
            min_dwell_s=self.min_s, max_motion_px=self.max_motion_px, exit_grace_s=self.exit_grace_s,
            anchor="centre",
        )


@dataclass
class SpillState:
    """Dwell episodes plus the background images (fixed size: bounded)."""

    dwell: DwellState
    background: np.ndarray | None = None  # float32 HxWx3 at work size
    warmup: list[np.ndarray] = field(default_factory=list)  # frames until the median is taken
    previous: np.ndarray | None = None
    roi: np.ndarray | None = None  # uint8 zone mask at work size
    first_ts: float | None = None
    last_ts: float | None = None
    scale: float = 1.0
    blobs: Tracked | None = None  # of the last analysed frame, reused until the next analysis
    blobs_since_ts: float = 0.0  # the blobs were already there (still) at this earlier analysis


def new_state(rule: SpillRule, camera_id: str) -> SpillState:
    return SpillState(dwell=DwellState(camera_id=camera_id))


def update(rule: SpillRule, state: SpillState, tracked: Tracked, ts_s: float,
           image: np.ndarray | None = None) -> list[Event]:
    """Advance one frame. `image` (RGB) feeds the static-change detector; without it only
    debris-class detections count."""
    candidates = tracked
    if rule.static.enabled and image is not None:
        last = state.last_ts
        if last is None or ts_s < last or ts_s - last >= rule.static.interval_s - 1e-6 or state.blobs is None:
            state.blobs = static_blobs(rule, state, image, tracked, ts_s)
            state.blobs_since_ts = ts_s if last is None or ts_s < last else last
        candidates = _concat(tracked, state.blobs)
        since = np.concatenate([np.full(len(tracked), ts_s), np.full(len(state.blobs), state.blobs_since_ts)])
        return update_dwell(rule.params, rule.zone, state.dwell, candidates, ts_s, rule=KIND, since_ts=since)
    return update_dwell(rule.params, rule.zone, state.dwell, candidates, ts_s, rule=KIND)


def _small(image: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """Blurred float32 HxWx3 at work size, and the scale from source pixels to it. A frame decoded
    on the GPU (a CUDA tensor) is shrunk there first, so only the small work copy crosses to the host."""
    h, w = image.shape[:2]
    scale = width / float(w)
    size_hw = (max(1, round(h * scale)), width)
    if isinstance(image, np.ndarray):
        small = cv2.resize(image, size_hw[::-1], interpolation=cv2.INTER_AREA)
    else:
        small = host_rgb(device_resize(image, size_hw))
    if small.ndim == 2:
        small = np.repeat(small[..., None], 3, axis=2)
    return cv2.GaussianBlur(small, (5, 5), 0).astype(np.float32), scale


def _grey(small: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)


def static_blobs(rule: SpillRule, state: SpillState, image: np.ndarray, tracked: Tracked,
                 ts_s: float) -> Tracked:
    """Boxes (source pixels) of regions that are new against the background and still since the
    previous frame; updates the background in `state`."""
    cfg = rule.static
    # Boxes and the zone are in the camera's frame pixels (`tracked`); `image` may be a smaller
    # analysis copy of that frame (decoded at the detector's size).
    h, w = tracked.height, tracked.width
    work, _ = _small(image, min(cfg.work_width_px, image.shape[1]))
    scale = work.shape[1] / float(w)
    empty = Tracked.empty(w, h)
    restarted = state.last_ts is not None and ts_s < state.last_ts
    if state.background is None or state.background.shape != work.shape or restarted:
        state.background, state.previous, state.scale = work.copy(), work, scale
        state.roi = cv2.resize(rule.zone.mask(w, h), (work.shape[1], work.shape[0]),
                               interpolation=cv2.INTER_NEAREST)
        state.first_ts = state.last_ts = ts_s
        state.warmup = [work]
        return empty
    dt = min(max(ts_s - state.last_ts, 0.0), 10.0)
    if ts_s - state.first_ts < cfg.warmup_s:
        state.warmup.append(work)
        if len(state.warmup) > cfg.warmup_max_frames:
            state.warmup = state.warmup[::2]  # keep the memory bounded on fast streams
        state.previous, state.last_ts = work, ts_s
        return empty
    if state.warmup:
        state.background = np.median(np.stack(state.warmup), axis=0).astype(np.float32)
        state.warmup = []
    grey, grey_bg = _grey(work), _grey(state.background)
    if _camera_moved(grey_bg, grey, cfg.max_shift_px):
        # Every pixel would look "new": start the background again from this view.
        state.background = None
        return static_blobs(rule, state, image, tracked, ts_s)

    new = _max_channel_diff(work, state.background) > cfg.diff_threshold
    still = _max_channel_diff(work, state.previous) < cfg.diff_threshold
    mask = (new & still & (state.roi > 0)).astype(np.uint8) * 255
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))

    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    area_px = grey.shape[0] * grey.shape[1]
    boxes, scores, object_labels, ghost_labels = [], [], [], []
    edges_now = edges_bg = None
    for label in range(1, n):
        x, y, bw, bh, area = stats[label]
        if not (cfg.min_area_frac * area_px <= area <= cfg.max_area_frac * area_px):
            continue  # specks are noise; huge regions are lighting changes, which the background learns
        if edges_now is None:
            edges_now, edges_bg = _edges(grey), _edges(grey_bg)
        if _is_ghost(edges_now, edges_bg, labels, label, (x, y, bw, bh)):
            # Something that was in the background has gone (a car that stood there when the
            # camera started): the road it uncovered is background, learn it at once.
            ghost_labels.append(label)
            continue
        object_labels.append(label)
        boxes.append(np.array([x, y, x + bw, y + bh], dtype=np.float64) / scale)
        scores.append(min(1.0, area / (bw * bh)))

    # The background follows the frame everywhere except under object-sized regions that are new
    # and still, so debris (or a parked car) is not absorbed while it lies there and leaves no
    # ghost when it goes; `absorb_after_s` bounds that for changes that last.
    step = cfg.background_rate_per_s * dt
    delta = np.clip(work - state.background, -step, step)
    if object_labels:
        frozen = _label_mask(labels, n, object_labels) & ~_absorbing(rule, state, grey.shape, ts_s)
        delta[frozen] = 0.0
    if ghost_labels:
        ghost = _label_mask(labels, n, ghost_labels)
        delta[ghost] = (work - state.background)[ghost]
    state.background += delta
    state.previous = work
    state.last_ts = ts_s
    if not boxes:
        return empty
    xyxy = np.stack(boxes)
    keep = ~_covered(xyxy, tracked, cfg.exclude_classes, cfg.exclude_coverage)
    xyxy = xyxy[keep]
    return Tracked.build(xyxy, np.asarray(scores)[keep], [STATIC_CLASS] * len(xyxy), [-1] * len(xyxy), w, h)


def _max_channel_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = cv2.absdiff(a, b)
    return np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2])


def _label_mask(labels: np.ndarray, n: int, chosen: list[int]) -> np.ndarray:
    lut = np.zeros(n, dtype=bool)
    lut[chosen] = True
    return lut[labels]


def _camera_moved(background: np.ndarray, grey: np.ndarray, max_shift_px: float) -> bool:
    """Global shift between background and frame (phase correlation: traffic does not move it),
    confirmed by the shifted background matching the frame clearly better than the unshifted one."""
    window = _hanning(grey.shape)
    # Copies: OpenCV 5 applies the window to its inputs in place.
    (dx, dy), response = cv2.phaseCorrelate(background.copy(), grey.copy(), window)
    # A weak peak is traffic, not the scene: only a clear global shift counts.
    if response <= 0.2 or (dx * dx + dy * dy) ** 0.5 <= max_shift_px:
        return False
    h, w = grey.shape
    shifted = cv2.warpAffine(background, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), borderMode=cv2.BORDER_REPLICATE)
    m = max(2, int(abs(dx)) + 2), max(2, int(abs(dy)) + 2)  # ignore the borders the shift uncovers
    inner = (slice(m[1], h - m[1]), slice(m[0], w - m[0]))
    before = float(np.median(np.abs(grey[inner] - background[inner])))
    after = float(np.median(np.abs(grey[inner] - shifted[inner])))
    return after < 0.7 * before


@lru_cache(maxsize=8)
def _hanning(shape: tuple[int, int]) -> np.ndarray:
    return cv2.createHanningWindow((shape[1], shape[0]), cv2.CV_32F)


def _edges(grey: np.ndarray) -> np.ndarray:
    return np.abs(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)) + np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3))


def _is_ghost(edges_now: np.ndarray, edges_bg: np.ndarray, labels: np.ndarray, label: int,
              box: tuple[int, int, int, int]) -> bool:
    """A ghost has its outline in the background, not in the frame: a real new object adds edges."""
    x, y, bw, bh = (int(v) for v in box)
    region = labels[max(0, y - 2):y + bh + 2, max(0, x - 2):x + bw + 2] == label
    region = cv2.dilate(region.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    now = float(edges_now[max(0, y - 2):y + bh + 2, max(0, x - 2):x + bw + 2][region].sum())
    bg = float(edges_bg[max(0, y - 2):y + bh + 2, max(0, x - 2):x + bw + 2][region].sum())
    return now < 0.8 * bg


def _absorbing(rule: SpillRule, state: SpillState, shape: tuple[int, int], ts_s: float) -> np.ndarray:
    """Work-size mask of episodes older than `absorb_after_s`: the background may learn them."""
    held = np.zeros(shape, dtype=bool)
    for ep in state.dwell.episodes.values():
        if ts_s - ep.start_ts >= rule.static.absorb_after_s:
            x1, y1, x2, y2 = (int(round(v * state.scale)) for v in ep.bbox)
            held[max(0, y1):y2 + 1, max(0, x1):x2 + 1] = True
    return held


def _covered(xyxy: np.ndarray, tracked: Tracked, classes: frozenset[str], min_coverage: float) -> np.ndarray:
    """Which blobs are mostly inside a box of a vehicle/person the detector sees (not debris)."""
    if len(tracked) == 0 or len(xyxy) == 0:
        return np.zeros(len(xyxy), dtype=bool)
    boxes = tracked.xyxy[np.isin(tracked.class_name, list(classes))]
    if len(boxes) == 0:
        return np.zeros(len(xyxy), dtype=bool)
    ix1 = np.maximum(xyxy[:, None, 0], boxes[None, :, 0])
    iy1 = np.maximum(xyxy[:, None, 1], boxes[None, :, 1])
    ix2 = np.minimum(xyxy[:, None, 2], boxes[None, :, 2])
    iy2 = np.minimum(xyxy[:, None, 3], boxes[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = ((xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]))[:, None]
    return ((inter / np.maximum(area, 1e-6)) >= min_coverage).any(axis=1)


def _concat(a: Tracked, b: Tracked) -> Tracked:
    if len(b) == 0:
        return a
    if len(a) == 0:
        return b
    return Tracked(
        np.concatenate([a.xyxy, b.xyxy]), np.concatenate([a.score, b.score]),
        np.concatenate([a.class_name, b.class_name]), np.concatenate([a.track_id, b.track_id]),
        a.width, a.height,
    )
