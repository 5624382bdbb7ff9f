"""Box geometry of the OCR pipeline: DB post-processing (probability map -> 4-point boxes),
perspective crops of text lines, skew estimation and reading order.

Boxes are float32 arrays of shape (4, 2), points clockwise from top-left, in image pixels.

>>> boxes = db_boxes(prob_map, DbParams(), dest_wh=(1280, 960))
>>> crops = [crop_line(bgr, b) for b in boxes]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class DbParams:
    """Differentiable-binarisation post-processing (PaddleOCR's DBPostProcess defaults for PP-OCRv4)."""

    thresh: float = 0.3
    box_thresh: float = 0.5
    unclip_ratio: float = 1.6
    max_candidates: int = 1000
    use_dilation: bool = True
    min_size: int = 3


def db_boxes(prob: np.ndarray, params: DbParams, dest_wh: tuple[int, int]) -> np.ndarray:
    """Text boxes from a (H, W) probability map, scaled to `dest_wh`; shape (N, 4, 2)."""
    height, width = prob.shape
    mask = (prob > params.thresh).astype(np.uint8)
    if params.use_dilation:
        mask = cv2.dilate(mask, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(mask * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    dest_w, dest_h = dest_wh
    boxes = []
    for contour in contours[: params.max_candidates]:
        rect = cv2.minAreaRect(contour)
        if min(rect[1]) < params.min_size:
            continue
        if _box_score(prob, _ordered(cv2.boxPoints(rect))) < params.box_thresh:
            continue
        # DB shrinks text regions by D = A * (1 - r^2) / L during training; grow them back by
        # D' = A * unclip_ratio / L. The region is a rectangle, so offsetting it by D' and taking
        # the minimum-area rectangle again is the same rectangle grown by D' on every side.
        (cx, cy), (rw, rh), angle = rect
        distance = rw * rh * params.unclip_ratio / max(2.0 * (rw + rh), 1e-6)
        grown = ((cx, cy), (rw + 2 * distance, rh + 2 * distance), angle)
        if min(grown[1]) < params.min_size + 2:
            continue
        box = _ordered(cv2.boxPoints(grown))
        box[:, 0] = np.clip(np.round(box[:, 0] / width * dest_w), 0, dest_w)
        box[:, 1] = np.clip(np.round(box[:, 1] / height * dest_h), 0, dest_h)
        boxes.append(box)
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4, 2)


def _box_score(prob: np.ndarray, box: np.ndarray) -> float:
    """Mean probability inside the box (the "fast" score of DB)."""
    h, w = prob.shape
    x0, x1 = (np.clip([np.floor(box[:, 0].min()), np.ceil(box[:, 0].max())], 0, w - 1)).astype(int)
    y0, y1 = (np.clip([np.floor(box[:, 1].min()), np.ceil(box[:, 1].max())], 0, h - 1)).astype(int)
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    cv2.fillPoly(mask, [(box - [x0, y0]).astype(np.int32)], 1)
    return float(cv2.mean(prob[y0 : y1 + 1, x0 : x1 + 1], mask)[0])


def _ordered(points: np.ndarray) -> np.ndarray:
    """Order 4 points clockwise from top-left: left pair by y, right pair by y."""
    pts = np.asarray(points, dtype=np.float32)
    by_x = pts[np.argsort(pts[:, 0], kind="stable")]
    left, right = by_x[:2], by_x[2:]
    tl, bl = left[np.argsort(left[:, 1], kind="stable")]
    tr, br = right[np.argsort(right[:, 1], kind="stable")]
    return np.array([tl, tr, br, bl], dtype=np.float32)


def drop_tiny(boxes: np.ndarray, min_side_px: float = 3.0) -> np.ndarray:
    keep = [
        b
        for b in boxes
        if np.linalg.norm(b[0] - b[1]) > min_side_px and np.linalg.norm(b[0] - b[3]) > min_side_px
    ]
    return np.asarray(keep, dtype=np.float32).reshape(-1, 4, 2)


def crop_line(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Perspective-rectified crop of one text box; tall crops are turned to lie horizontally."""
    width = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3])))
    height = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
    width, height = max(width, 1), max(height, 1)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(box.astype(np.float32), target)
    crop = cv2.warpPerspective(
        image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )
    if crop.shape[0] / crop.shape[1] >= 1.5:  # vertical text column: PP-OCR reads it rotated
        crop = np.rot90(crop)
    return np.ascontiguousarray(crop)


def skew_deg(boxes: np.ndarray) -> float:
    """Dominant text angle (degrees, positive = clockwise in image coordinates) of wide boxes.

    Weighted median over boxes at least twice as wide as tall, so that single characters and
    vertical columns do not vote.
    """
    angles, weights = [], []
    for b in boxes:
        top = b[1] - b[0]
        width = float(np.linalg.norm(top))
        height = float(np.linalg.norm(b[3] - b[0]))
        if width >= 2 * height and width > 0:
            angles.append(math.degrees(math.atan2(top[1], top[0])))
            weights.append(width)
    if not angles:
        return 0.0
    order = np.argsort(angles)
    cum = np.cumsum(np.asarray(weights)[order])
    return float(np.asarray(angles)[order][np.searchsorted(cum, cum[-1] / 2)])


def rotate_points(points: np.ndarray, angle_deg: float, center: tuple[float, float]) -> np.ndarray:
    """Rotate points by -angle around `center` (undo a skew of `angle_deg`)."""
    rad = math.radians(-angle_deg)
    c, s = math.cos(rad), math.sin(rad)
    p = np.asarray(points, dtype=np.float64) - center
    return np.stack([p[..., 0] * c - p[..., 1] * s, p[..., 0] * s + p[..., 1] * c], axis=-1) + center


def reading_order(boxes: np.ndarray) -> list[int]:
    """Indices of boxes top-to-bottom, left-to-right, after undoing the page's skew.

    Boxes whose vertical extents overlap by at least half of the smaller height form one row.
    """
    if len(boxes) == 0:
        return []
    center = tuple(boxes.reshape(-1, 2).mean(axis=0))
    flat = rotate_points(boxes, skew_deg(boxes), center)
    y0, y1 = flat[:, :, 1].min(axis=1), flat[:, :, 1].max(axis=1)
    x0 = flat[:, :, 0].min(axis=1)
    rows: list[list[int]] = []
    for i in np.argsort((y0 + y1) / 2, kind="stable"):
        if rows:
            last = rows[-1]
            top, bottom = y0[last].min(), y1[last].max()
            overlap = min(bottom, y1[i]) - max(top, y0[i])
            if overlap >= 0.5 * min(bottom - top, y1[i] - y0[i]):
                last.append(int(i))
                continue
        rows.append([int(i)])
    return [i for row in rows for i in sorted(row, key=lambda j: x0[j])]
