"""A synthetic calibrated road camera for the stop detector's tests: a pinhole camera 4 m above a
straight road, so every vehicle's box (where it touches the road, how tall it looks) follows from
its road position in metres. Tracks are given as road-plane paths; frames are `Tracked`."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from pipelines.calibration import Calibration
from pipelines.track import Tracked

W, H, FPS = 1280, 720, 10.0
FOCAL_PX, CAMERA_HEIGHT_M, HORIZON_V = 1000.0, 4.0, 280.0
CAR_HEIGHT_M, CAR_WIDTH_M = 1.6, 1.8


def project(x_m: float, y_m: float) -> tuple[float, float]:
    """Road point (x across, y ahead, metres) -> image pixel (u, v)."""
    return W / 2 + FOCAL_PX * x_m / y_m, HORIZON_V + FOCAL_PX * CAMERA_HEIGHT_M / y_m


ROAD_POINTS_M = [(-7.5, 12.0), (7.5, 12.0), (7.5, 200.0), (-7.5, 200.0)]  # two lanes each way, 200 m
IMAGE_POINTS = [project(x, y) for x, y in ROAD_POINTS_M]
CALIBRATION = Calibration.from_points(IMAGE_POINTS, ROAD_POINTS_M)


@dataclass(frozen=True)
class Path:
    """One vehicle over [t0, t1): tracker id as a function of t (fragmentation), road position."""

    t0: float
    t1: float
    pos: Callable[[float], tuple[float, float]]
    track_id: Callable[[float], int]
    gaps: tuple[tuple[float, float], ...] = ()  # spans with no detection (occlusion, id switch)


def parked(x: float, y: float) -> Callable[[float], tuple[float, float]]:
    return lambda t: (x, y)


def drive_then_stop(x: float, y0: float, speed_m_s: float, stop_at_s: float, decel_m_s2: float = 3.0,
                    t_start: float = 0.0) -> Callable[[float], tuple[float, float]]:
    """Drives away from the camera at `speed_m_s`, brakes at `decel_m_s2`, stands still from
    `stop_at_s` on."""
    brake_s = speed_m_s / decel_m_s2
    t_brake = stop_at_s - brake_s

    def pos(t: float) -> tuple[float, float]:
        if t <= t_brake:
            return x, y0 + speed_m_s * (t - t_start)
        tb = min(t, stop_at_s) - t_brake
        return x, y0 + speed_m_s * (t_brake - t_start) + speed_m_s * tb - 0.5 * decel_m_s2 * tb * tb
    return pos


def cruise(x: float, y0: float, speed_m_s: float, t_start: float = 0.0) -> Callable[[float], tuple[float, float]]:
    return lambda t: (x, y0 + speed_m_s * (t - t_start))


def cross(y: float, x0: float, speed_m_s: float) -> Callable[[float], tuple[float, float]]:
    """Across the view (a junction, a camera beside the road) at a constant speed."""
    return lambda t: (x0 + speed_m_s * t, y)


def one_id(track_id: int) -> Callable[[float], int]:
    return lambda t: track_id


def box_of(x_m: float, y_m: float) -> list[float]:
    u, v = project(x_m, y_m)
    h = FOCAL_PX * CAR_HEIGHT_M / y_m
    w = FOCAL_PX * CAR_WIDTH_M / y_m
    return [u - w / 2, v - h, u + w / 2, v]


def frames(paths: list[Path], t_end: float, jitter_frac: float = 0.03, seed: int = 0,
           cls: str = "car") -> Iterator[tuple[float, Tracked]]:
    """Frames at FPS; each box corner jitters by up to `jitter_frac` of the box height, as a
    detector's boxes do (a 100 px tall near car by +-3 px, a 10 px far one by a third of a pixel)."""
    rng = random.Random(seed)
    for k in range(int(round(t_end * FPS))):
        t = k / FPS
        rows = []
        for p in paths:
            if not p.t0 <= t < p.t1 or any(a <= t < b for a, b in p.gaps):
                continue
            box = box_of(*p.pos(t))
            j = jitter_frac * (box[3] - box[1])
            rows.append(([c + rng.uniform(-j, j) for c in box], 0.8, p.track_id(t)))
        if rows:
            xyxy, score, tid = zip(*rows, strict=True)
            yield t, Tracked.build(xyxy, score, [cls] * len(rows), tid, W, H)
        else:
            yield t, Tracked.empty(W, H)


def speed_track(speed_m_s: float, t_end: float) -> list[tuple[float, np.ndarray]]:
    """(t, box) of one car cruising along the road at a known speed: the calibration round trip."""
    return [(k / FPS, np.array(box_of(1.75, 20.0 + speed_m_s * k / FPS))) for k in range(int(t_end * FPS))]
