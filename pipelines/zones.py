"""Zones (polygons per camera) and the per-camera mapping from detector classes to rule classes.

A zone is given in pixels or normalised to 0..1 of the frame; it is resolved to pixels once the
frame size is known. Rules test the anchor (bottom centre) of each box against the zone.

>>> zone = Zone("no_parking", [(0.1, 0.5), (0.9, 0.5), (0.9, 1.0), (0.1, 1.0)], normalized=True)
>>> zone.contains(np.array([[320.0, 300.0]]), width=640, height=360)
array([ True])
>>> mapping = ClassMapping(rename={"cell phone": "car", "suitcase": "car"})
>>> mapping.map_names(["cell phone", "person"])
['car', 'person']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from hub.errors import InvalidInput

VEHICLE_CLASSES: frozenset[str] = frozenset({"car", "truck", "bus", "motorcycle"})


@dataclass(frozen=True)
class Zone:
    """A polygon on one camera's image.

    `points` are (x, y) pairs in pixels, or fractions of width/height when `normalized`.
    Example: `Zone("kerb", [(0, 300), (640, 300), (640, 360), (0, 360)])`.
    """

    zone_id: str
    points: tuple[tuple[float, float], ...]
    normalized: bool = False

    def __init__(self, zone_id: str, points: Iterable[Sequence[float]], normalized: bool = False) -> None:
        pts = tuple((float(p[0]), float(p[1])) for p in points)
        if len(pts) < 3:
            raise InvalidInput(f"zone {zone_id!r} needs at least 3 points, got {len(pts)}", field="zones")
        arr = np.asarray(pts)
        if not np.isfinite(arr).all():
            raise InvalidInput(f"zone {zone_id!r} has non-finite coordinates", field="zones")
        if normalized and ((arr < 0).any() or (arr > 1).any()):
            raise InvalidInput(f"normalised zone {zone_id!r} has points outside 0..1", field="zones")
        object.__setattr__(self, "zone_id", str(zone_id))
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "normalized", bool(normalized))

    def polygon_px(self, width: int, height: int) -> np.ndarray:
        """The polygon as an (N, 2) float array in pixels of a width x height frame."""
        arr = np.asarray(self.points, dtype=np.float64)
        if self.normalized:
            arr = arr * np.array([width, height], dtype=np.float64)
        return arr

    def contains(self, points_xy: np.ndarray, *, width: int, height: int) -> np.ndarray:
        """Boolean mask: which (x, y) points lie inside the polygon (even-odd rule, vectorised)."""
        points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        if len(points) == 0:
            return np.zeros(0, dtype=bool)
        return _inside(points, *_edges(self, width, height))

    def mask(self, width: int, height: int) -> np.ndarray:
        """A uint8 mask (255 inside) of the zone at the given frame size."""
        import cv2

        out = np.zeros((height, width), dtype=np.uint8)
        cv2.fillPoly(out, [np.round(self.polygon_px(width, height)).astype(np.int32)], 255)
        return out


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd ray casting of M points against one polygon of N vertices, O(M*N) in numpy."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    x1, y1 = polygon[:, 0], polygon[:, 1]  # (N,)
    return _inside(points, x1, y1, np.roll(x1, -1), np.roll(y1, -1))


@lru_cache(maxsize=1024)
def _edges(zone: Zone, width: int, height: int) -> tuple[np.ndarray, ...]:
    # Rules test every frame against the same few zones: resolve each polygon's edges once.
    poly = zone.polygon_px(width, height)
    x1, y1 = poly[:, 0], poly[:, 1]
    return x1, y1, np.roll(x1, -1), np.roll(y1, -1)


def _inside(points: np.ndarray, x1, y1, x2, y2) -> np.ndarray:
    x = points[:, 0:1]  # (M, 1)
    y = points[:, 1:2]
    crosses = (y1 > y) != (y2 > y)  # (M, N): the edge straddles the horizontal line through the point
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at_y = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    hits = crosses & (x < x_at_y)
    return (hits.sum(axis=1) % 2) == 1


def anchors_bottom_centre(xyxy: np.ndarray) -> np.ndarray:
    """(N, 2) bottom-centre points of (N, 4) boxes: where a vehicle touches the ground."""
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2.0, xyxy[:, 3]], axis=1)


def anchors_centre(xyxy: np.ndarray) -> np.ndarray:
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2.0, (xyxy[:, 1] + xyxy[:, 3]) / 2.0], axis=1)


@dataclass(frozen=True)
class ClassMapping:
    """How one camera reads the detector's class names.

    COCO detectors label cars seen from above as `cell phone` or `suitcase`; an overhead camera
    renames those to `car` here. The other supported path is a fine-tuned detector registered in
    the model registry and named in the camera's `model` (then no renaming is needed).
    `keep` limits which (renamed) classes reach the tracker; empty keeps every class.

    Example: `ClassMapping(rename={"cell phone": "car"}, keep=frozenset({"car"}))`.
    """

    rename: Mapping[str, str] = field(default_factory=dict)
    keep: frozenset[str] = frozenset()
    min_score: float = 0.25

    def map_names(self, names: Sequence[str]) -> list[str]:
        return [self.rename.get(n, n) for n in names]

    def __hash__(self) -> int:  # frozen dataclass with a dict field: hash by content
        return hash((tuple(sorted(self.rename.items())), self.keep, self.min_score))
