"""Road-plane speed of every track: a constant-velocity Kalman filter per track, run batched over
the tracks of a frame (numpy, a handful of 4x4 matrices per frame).

With a `Calibration` the filter runs in metres on the road plane, and the measurement noise of
each frame is the detector's pixel jitter carried through the homography's Jacobian: one pixel at
the horizon is metres, near the camera centimetres, so far vehicles are trusted less, not more.
Without one it runs in pixels, and speeds are scaled to metres by the object's box height
(`calibration.object_scale_m_per_px`), never left in raw pixels.

>>> motion = RoadMotion(MotionParams(), calibration)
>>> est = motion.update(track_ids, xyxy, class_names, ts_s=12.4)
>>> est.speed_m_s, est.speed_sd_m_s, est.pos           # per row; pos in metres (or pixels)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipelines.calibration import Calibration, object_scale_m_per_px
from pipelines.zones import anchors_bottom_centre


@dataclass(frozen=True)
class MotionParams:
    """`accel_noise_m_s2`: how hard vehicles change speed (the filter's process noise; braking to a
    stop is about 3 m/s^2); `anchor_noise_frac`: the detector's box jitter as a fraction of the box
    height; `initial_speed_sd_m_s`: the speed prior of a new track (highway traffic, ~30 m/s)."""

    accel_noise_m_s2: float = 1.5
    anchor_noise_frac: float = 0.03
    min_anchor_noise_px: float = 0.7
    initial_speed_sd_m_s: float = 30.0
    max_track_age_s: float = 10.0  # a track unseen this long is forgotten


@dataclass(frozen=True)
class MotionEstimate:
    """Per row of the input: `pos` (N, 2) in the filter's units (metres when calibrated, else
    pixels), `units_per_m` (N,), `speed_m_s` and its standard deviation `speed_sd_m_s` (N,), `pos_sd`;
    NaN rows lie above the horizon (no road position)."""

    pos: np.ndarray
    units_per_m: np.ndarray
    speed_m_s: np.ndarray
    speed_sd_m_s: np.ndarray
    pos_sd: np.ndarray  # (N,) the measurement's own noise, in the filter's units: large far away
    born_ts: np.ndarray  # (N,) when the row's track was first seen (NaN above the horizon)
    width_m: np.ndarray  # (N,) the box's bottom edge on the road plane, metres; NaN without calibration


@dataclass
class _Filter:
    x: np.ndarray  # (4,) position and velocity in units and units/s
    p: np.ndarray  # (4, 4)
    last_ts: float
    m_per_unit: float  # 1 when calibrated; metres per pixel of this object otherwise (smoothed)
    born_ts: float = float("nan")  # when this track id was first seen


@dataclass
class RoadMotion:
    params: MotionParams
    calibration: Calibration | None = None
    filters: dict[int, _Filter] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.filters)

    def reset(self) -> None:
        self.filters.clear()

    def adopt(self, new_id: int, old_id: int) -> None:
        """A new track id is an old track seen again (fragmentation): carry over its velocity and
        how sure the filter was of it, so the new id needs no time to converge."""
        old, new = self.filters.get(old_id), self.filters.get(new_id)
        if old is None or new is None:
            return
        new.x[2:] = old.x[2:] * (old.m_per_unit / new.m_per_unit)
        new.p[2:, 2:] = old.p[2:, 2:] * (old.m_per_unit / new.m_per_unit) ** 2
        new.p[:2, 2:] = new.p[2:, :2] = 0.0

    def update(self, track_ids: Sequence[int], xyxy: np.ndarray, class_names: Sequence[str],
               ts_s: float) -> MotionEstimate:
        boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        ids = [int(i) for i in track_ids]
        n = len(ids)
        anchors = anchors_bottom_centre(boxes)
        pos, r, m_per_unit = self._measure(anchors, boxes, class_names)
        ok = np.isfinite(pos).all(axis=1)
        speed = np.full(n, np.nan)
        speed_sd = np.full(n, np.nan)
        born = np.full(n, np.nan)
        rows = [i for i in range(n) if ok[i]]
        if rows:
            self._step(rows, ids, pos, r, m_per_unit, ts_s)
            fs = [self.filters[ids[i]] for i in rows]
            x = np.stack([f.x for f in fs])
            p = np.stack([f.p for f in fs])
            scale = np.array([f.m_per_unit for f in fs])
            pos[rows] = x[:, :2]
            speed[rows] = np.hypot(x[:, 2], x[:, 3]) * scale
            speed_sd[rows] = np.sqrt(np.maximum(p[:, 2, 2] + p[:, 3, 3], 0.0) / 2.0) * scale
            born[rows] = [f.born_ts for f in fs]
        self._forget(ts_s)
        pos_sd = np.sqrt(np.maximum(r[:, 0, 0] + r[:, 1, 1], 0.0) / 2.0)
        return MotionEstimate(pos=pos, units_per_m=1.0 / m_per_unit, speed_m_s=speed, speed_sd_m_s=speed_sd,
                              pos_sd=pos_sd, born_ts=born, width_m=self._width_m(boxes))

    def _width_m(self, boxes: np.ndarray) -> np.ndarray:
        """The box's bottom edge carried onto the road plane: about the vehicle's width (more when
        its side shows). Without a calibration there is no such measure (a box-height scale would
        only restate the box's aspect)."""
        if self.calibration is None:
            return np.full(len(boxes), np.nan)
        left = self.calibration.to_road(boxes[:, [0, 3]])
        right = self.calibration.to_road(boxes[:, [2, 3]])
        return np.hypot(*(right - left).T)

    def _measure(self, anchors: np.ndarray, boxes: np.ndarray, class_names: Sequence[str]):
        """Road positions, their (N, 2, 2) noise covariances and metres per unit of each row."""
        heights = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
        sigma_px = np.maximum(self.params.anchor_noise_frac * heights, self.params.min_anchor_noise_px)
        eye = np.eye(2)[None]
        if self.calibration is None:
            return anchors.copy(), (sigma_px ** 2)[:, None, None] * eye, object_scale_m_per_px(boxes, class_names)
        jac = self.calibration.jacobian(anchors)  # metres per pixel, (N, 2, 2)
        r = (sigma_px ** 2)[:, None, None] * (jac @ np.transpose(jac, (0, 2, 1)))
        r = r + 1e-4 * eye  # a centimetre floor keeps the innovation invertible
        return self.calibration.to_road(anchors), r, np.ones(len(anchors))

    def _step(self, rows: list[int], ids: list[int], pos: np.ndarray, r: np.ndarray, m_per_unit: np.ndarray,
              ts_s: float) -> None:
        prm = self.params
        fresh = [i for i in rows if ids[i] not in self.filters]
        for i in fresh:
            v_sd = prm.initial_speed_sd_m_s / m_per_unit[i]
            p = np.zeros((4, 4))
            p[:2, :2] = r[i]
            p[2, 2] = p[3, 3] = v_sd ** 2
            self.filters[ids[i]] = _Filter(np.array([*pos[i], 0.0, 0.0]), p, ts_s, float(m_per_unit[i]), ts_s)
        fresh_rows = set(fresh)
        olds = [i for i in rows if i not in fresh_rows]
        if not olds:
            return
        fs = [self.filters[ids[i]] for i in olds]
        for f, i in zip(fs, olds, strict=True):  # box-height scale drifts slowly as the object nears
            f.m_per_unit = f.m_per_unit if self.calibration else 0.8 * f.m_per_unit + 0.2 * float(m_per_unit[i])
        x = np.stack([f.x for f in fs])
        p = np.stack([f.p for f in fs])
        dt = np.maximum(np.array([ts_s - f.last_ts for f in fs]), 1e-3)
        q_acc = (prm.accel_noise_m_s2 / np.array([f.m_per_unit for f in fs])) ** 2
        x, p = _predict(x, p, dt, q_acc)
        x, p = _correct(x, p, pos[olds], r[olds])
        for k, f in enumerate(fs):
            f.x, f.p, f.last_ts = x[k], p[k], ts_s

    def _forget(self, ts_s: float) -> None:
        stale = [k for k, f in self.filters.items() if ts_s - f.last_ts > self.params.max_track_age_s
                 or f.last_ts > ts_s]
        for k in stale:
            del self.filters[k]


def _predict(x: np.ndarray, p: np.ndarray, dt: np.ndarray, q_acc: np.ndarray):
    n = len(x)
    f = np.tile(np.eye(4), (n, 1, 1))
    f[:, 0, 2] = f[:, 1, 3] = dt
    # White-noise acceleration: Q = q * [[dt^3/3, dt^2/2], [dt^2/2, dt]] per axis.
    q = np.zeros((n, 4, 4))
    a, b, c = dt ** 3 / 3.0, dt ** 2 / 2.0, dt
    for i in (0, 1):
        q[:, i, i], q[:, i, i + 2], q[:, i + 2, i], q[:, i + 2, i + 2] = a, b, b, c
    q *= q_acc[:, None, None]
    x = (f @ x[:, :, None])[:, :, 0]
    p = f @ p @ np.transpose(f, (0, 2, 1)) + q
    return x, p


def _correct(x: np.ndarray, p: np.ndarray, z: np.ndarray, r: np.ndarray):
    innov = z - x[:, :2]
    s = p[:, :2, :2] + r
    det = s[:, 0, 0] * s[:, 1, 1] - s[:, 0, 1] * s[:, 1, 0]
    s_inv = np.stack([s[:, 1, 1], -s[:, 0, 1], -s[:, 1, 0], s[:, 0, 0]], axis=1).reshape(-1, 2, 2) / det[:, None, None]
    k = p[:, :, :2] @ s_inv  # (N, 4, 2)
    x = x + (k @ innov[:, :, None])[:, :, 0]
    p = p - k @ p[:, :2, :]
    p = 0.5 * (p + np.transpose(p, (0, 2, 1)))
    return x, p
