"""Camera calibration: a homography from image pixels to the road plane, so that rules measure
motion in metres and speed in km/h whatever the distance to the camera.

Without calibration, positions stay in pixels and the metres per pixel of each object are
estimated from its box height (`NOMINAL_HEIGHT_M`): a far car 16 px tall and a near one 160 px
tall then move the same "metres" for the same real motion, which raw pixels never do.

>>> cal = Calibration.from_points([(100, 500), (540, 500), (380, 200), (260, 200)],
...                              [(0, 0), (7.5, 0), (7.5, 60), (0, 60)])
>>> cal.to_road(np.array([[320.0, 350.0]]))      # metres on the road plane
>>> overlay = draw_grid(frame, cal, spacing_m=5.0)  # ops check the grid against lane markings
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import Field, model_validator

from hub.contract import WireModel, validate_as
from hub.errors import InvalidInput

# Typical box heights of road users seen from a pole-mounted camera (about the physical height
# of the vehicle, plus a little of its length as the view tilts): the scale of uncalibrated speed.
NOMINAL_HEIGHT_M: dict[str, float] = {"car": 1.6, "truck": 3.2, "bus": 3.2, "motorcycle": 1.4}
DEFAULT_HEIGHT_M = 1.6
# The narrowest road vehicle of each class, less 5-15 % for box jitter: kei cars are 1.48 m wide, small
# vans and pickups (COCO's "truck") about 1.7 m, midi buses 2.1 m, a motorcycle's handlebars 0.6 m.
# A box's bottom edge, carried onto the road plane, spans at least the vehicle's width (more when
# its side shows), so a box narrower than this on the road is not a whole vehicle of that class.
MIN_WIDTH_M: dict[str, float] = {"car": 1.4, "truck": 1.6, "bus": 2.0, "motorcycle": 0.5, "bicycle": 0.3}


def _fail(message: str) -> InvalidInput:
    return InvalidInput(message, field="calibration")


@dataclass(frozen=True, eq=False)  # holds an array: identity, not value, equality
class Calibration:
    """`image_to_map`: 3x3 homography from (u, v, 1) pixels to road-map units (x, y, w; divide by w);
    `metres_per_unit`: the size of one map unit in metres (1.0 when the map is in metres)."""

    image_to_map: np.ndarray
    metres_per_unit: float = 1.0

    def __post_init__(self) -> None:
        h = np.asarray(self.image_to_map, dtype=np.float64)
        if h.shape != (3, 3) or not np.isfinite(h).all():
            raise _fail("the homography must be a finite 3x3 matrix")
        if abs(np.linalg.det(h)) < 1e-12 or np.linalg.cond(h) > 1e12:
            raise _fail("the homography is singular (the points may be collinear)")
        if not (np.isfinite(self.metres_per_unit) and self.metres_per_unit > 0):
            raise _fail("metres_per_unit must be a positive number")
        # A homography is defined up to scale, sign included. Pick the sign that makes w > 0 on the
        # road, which lies below the horizon (large v) for an upright camera; then w <= 0 means
        # "above the horizon" for both directions of the mapping.
        ground_sign = np.sign(h[2, 1]) if abs(h[2, 1]) > 1e-15 else np.sign(h[2, 2])
        h = h * (ground_sign or 1.0)
        object.__setattr__(self, "image_to_map", h)
        object.__setattr__(self, "_inverse", np.linalg.inv(h))

    @staticmethod
    def from_points(image_px: Sequence[Sequence[float]], road: Sequence[Sequence[float]],
                    metres_per_unit: float = 1.0, *, max_error_units: float | None = None) -> Calibration:
        """Fit from 4+ pairs of image points and road points (e.g. lane-marking corners measured in
        metres). A fit that misses its own points by more than `max_error_units` (default 2 % of
        the points' extent) means a typo or a point off the road plane, and is refused."""
        src = np.asarray(image_px, dtype=np.float64)
        dst = np.asarray(road, dtype=np.float64)
        if src.ndim != 2 or src.shape[1:] != (2,) or src.shape != dst.shape:
            raise _fail("image and road points must be two lists of (x, y) pairs of the same length")
        if len(src) < 4:
            raise _fail(f"a homography needs at least 4 point pairs, got {len(src)}")
        if not (np.isfinite(src).all() and np.isfinite(dst).all()):
            raise _fail("calibration points must be finite numbers")
        for name, pts in (("image", src), ("road", dst)):
            if _rank_2d(pts) < 2:
                raise _fail(f"the {name} points are collinear")
        h = _dlt(src, dst)
        cal = Calibration(h, metres_per_unit)
        err = np.linalg.norm(cal.to_map(src) - dst, axis=1)
        limit = max_error_units if max_error_units is not None else 0.02 * float(np.ptp(dst, axis=0).max())
        if not np.all(np.isfinite(err)):
            raise _fail("the points do not fit one road plane (some map beyond its horizon)")
        if float(err.max()) > limit:
            raise _fail(f"the points do not fit one road plane (worst error {float(err.max()):.3g} units)")
        return cal

    def to_map(self, xy_px: np.ndarray) -> np.ndarray:
        """(N, 2) pixels -> (N, 2) map units; NaN for points on or above the horizon."""
        return _apply(self.image_to_map, xy_px)

    def to_road(self, xy_px: np.ndarray) -> np.ndarray:
        """(N, 2) pixels -> (N, 2) metres on the road plane; NaN above the horizon."""
        return self.to_map(xy_px) * self.metres_per_unit

    def to_image(self, road_m: np.ndarray) -> np.ndarray:
        """(N, 2) road metres -> (N, 2) pixels; NaN for points behind the camera."""
        return _apply(self._inverse, np.asarray(road_m, dtype=np.float64) / self.metres_per_unit)  # type: ignore[attr-defined]

    def jacobian(self, xy_px: np.ndarray) -> np.ndarray:
        """(N, 2, 2) metres per pixel at each point: d(road)/d(u, v). Far points have big entries."""
        pts = np.asarray(xy_px, dtype=np.float64).reshape(-1, 2)
        h = self.image_to_map
        num = pts @ h[:2, :2].T + h[:2, 2]  # (N, 2)
        w = pts @ h[2, :2] + h[2, 2]  # (N,)
        jac = (h[None, :2, :2] * w[:, None, None] - num[:, :, None] * h[None, 2, None, :2]) / (w ** 2)[:, None, None]
        return jac * self.metres_per_unit


def _rank_2d(pts: np.ndarray) -> int:
    centred = pts - pts.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    return int((s > 1e-9 * max(1.0, float(s[0]))).sum())


def _dlt(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares homography by the normalised direct linear transform (Hartley & Zisserman)."""
    def norm(p: np.ndarray) -> np.ndarray:
        mean = p.mean(axis=0)
        scale = np.sqrt(2) / max(np.linalg.norm(p - mean, axis=1).mean(), 1e-12)
        return np.array([[scale, 0, -scale * mean[0]], [0, scale, -scale * mean[1]], [0, 0, 1]])

    ts, td = norm(src), norm(dst)
    s = _apply(ts, src)
    d = _apply(td, dst)
    rows = []
    for (x, y), (u, v) in zip(s, d, strict=True):
        rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
        rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
    _, _, vt = np.linalg.svd(np.asarray(rows))
    h = np.linalg.inv(td) @ vt[-1].reshape(3, 3) @ ts
    return h / h[2, 2] if abs(h[2, 2]) > 1e-12 else h


def _apply(h: np.ndarray, xy: np.ndarray) -> np.ndarray:
    pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    out = pts @ h[:2, :2].T + h[:2, 2]
    w = pts @ h[2, :2] + h[2, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        res = out / w[:, None]
    res[w <= 1e-12] = np.nan  # on or beyond the horizon: no point of the road plane
    return res


def grid_lines(cal: Calibration, width: int, height: int, *, spacing_m: float = 5.0,
               max_lines: int = 400) -> list[np.ndarray]:
    """Polylines (each (K, 2) pixels) of a road-plane grid with `spacing_m` between lines, clipped
    to the part of the road the image sees."""
    if spacing_m <= 0:
        raise _fail("grid spacing must be positive")
    u, v = np.meshgrid(np.linspace(0, width - 1, 64), np.linspace(0, height - 1, 64))
    pix = np.stack([u.ravel(), v.ravel()], axis=1)
    road = cal.to_road(pix)
    # Near the horizon one pixel spans many metres: grid lines there would merge into a smear.
    # Draw the grid only where its lines stay at least 3 px apart.
    m_per_px = np.linalg.norm(cal.jacobian(pix), axis=(1, 2))
    road = road[np.isfinite(road).all(axis=1) & (m_per_px < spacing_m / 3.0)]
    if len(road) == 0:
        return []
    lo, hi = road.min(axis=0), road.max(axis=0)
    lines: list[np.ndarray] = []
    for axis in (0, 1):
        first = np.floor(lo[axis] / spacing_m) * spacing_m
        for value in np.arange(first, hi[axis] + spacing_m, spacing_m)[:max_lines // 2]:
            t = np.linspace(lo[1 - axis], hi[1 - axis], 200)
            pts = np.empty((len(t), 2))
            pts[:, axis], pts[:, 1 - axis] = value, t
            img = cal.to_image(pts)
            ok = np.isfinite(img).all(axis=1) & (img[:, 0] >= -width) & (img[:, 0] <= 2 * width) \
                & (img[:, 1] >= -height) & (img[:, 1] <= 2 * height)
            if ok.sum() >= 2:
                lines.append(img[ok])
    return lines


def draw_grid(image: np.ndarray, cal: Calibration, *, spacing_m: float = 5.0,
              colour: tuple[int, int, int] = (0, 255, 255)) -> np.ndarray:
    """A copy of `image` (H, W, 3) with the calibrated road grid drawn on it: squares of
    `spacing_m` that should look square on the road, lines that follow lane markings."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    for line in grid_lines(cal, w, h, spacing_m=spacing_m):
        cv2.polylines(out, [np.round(line).astype(np.int32)], False, colour, 1, cv2.LINE_AA)
    cv2.putText(out, f"road grid {spacing_m:g} m", (8, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return out


def object_scale_m_per_px(xyxy: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Metres per pixel of each object when there is no calibration: its nominal height over its
    box height. Speeds so normalised are comparable near and far (to within the class's spread)."""
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    heights_m = np.array([NOMINAL_HEIGHT_M.get(str(c), DEFAULT_HEIGHT_M) for c in class_names], dtype=np.float64)
    return heights_m / np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)


class CalibrationSpec(WireModel):
    """A camera's calibration in its config: either `homography` (3x3, image pixels -> road-map
    units) or 4+ `image_points` with the matching `road_points` (e.g. lane-marking corners), plus
    `metres_per_unit` of the road map (1.0 when the road points are in metres).

    Example: `{"image_points": [[100, 500], [540, 500], [380, 200], [260, 200]],
    "road_points": [[0, 0], [7.5, 0], [7.5, 60], [0, 60]]}` (two lanes, 60 m of road)."""

    homography: list[list[float]] | None = Field(None, min_length=3, max_length=3)
    image_points: list[tuple[float, float]] | None = Field(None, min_length=4, max_length=64)
    road_points: list[tuple[float, float]] | None = Field(None, min_length=4, max_length=64)
    metres_per_unit: float = Field(1.0, gt=0, le=1000)

    @model_validator(mode="after")
    def _one_form(self) -> CalibrationSpec:
        points = self.image_points is not None or self.road_points is not None
        if (self.homography is None) == (not points):
            raise ValueError("give either `homography` or `image_points` with `road_points`, not both or neither")
        if points and (self.image_points is None or self.road_points is None):
            raise ValueError("`image_points` and `road_points` go together")
        try:
            self.build()
        except InvalidInput as exc:  # pydantic reports it as a 400 on `calibration`
            raise ValueError(exc.message) from None
        return self

    def build(self) -> Calibration:
        if self.homography is not None:
            if any(len(row) != 3 for row in self.homography):
                raise _fail("the homography must be a 3x3 matrix")
            return Calibration(np.asarray(self.homography, dtype=np.float64), self.metres_per_unit)
        return Calibration.from_points(self.image_points, self.road_points, self.metres_per_unit)


def camera_calibration(config: dict, camera_id: str | None = None) -> Calibration:
    """The calibration of one camera from a camera config, or from a streams config (`cameras:`)
    when `camera_id` names one of its cameras. Validated as the hub validates it."""

    cameras = config.get("cameras") if isinstance(config, dict) else None
    if cameras is not None:
        matches = [c for c in cameras if isinstance(c, dict) and (camera_id is None or c.get("camera_id") == camera_id)]
        if len(matches) != 1:
            raise InvalidInput(f"name one camera of the config with its camera_id (got {camera_id!r})", field="camera_id")
        config = matches[0]
    if not isinstance(config, dict) or config.get("calibration") is None:
        raise _fail("the camera has no `calibration`")
    return validate_as(CalibrationSpec, config["calibration"], "invalid calibration").build()


def read_snapshot(path: str) -> np.ndarray:
    """A BGR frame: an image file, or the first frame of a video file."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        capture = cv2.VideoCapture(str(path))
        ok, image = capture.read()
        capture.release()
        if not ok:
            raise InvalidInput(f"cannot read an image or a video frame from {path}", field="snapshot")
    return image
