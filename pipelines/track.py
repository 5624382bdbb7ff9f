"""One multi-object tracker per camera: ByteTrack from Roboflow's `trackers` package (the home of
supervision's ByteTrack since supervision 0.27), fed with the camera's own video time.

Detections are renamed and filtered with the camera's `ClassMapping` first (an overhead camera
turns `cell phone` into `car`), then tracked; the result stays columnar.

>>> tracker = CameraTracker(TrackerConfig(frame_rate_hz=5.0), ClassMapping(keep=frozenset({"car"})))
>>> tracked = tracker.update(xyxy, scores, class_names, ts_s=12.4, width=1280, height=720)
>>> tracked.track_id        # -1 never appears: unconfirmed tracks are left out
array([3, 7])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from pipelines.zones import ClassMapping

if TYPE_CHECKING:  # the detector's package loads torch; the columns need only the type
    from models.detection.detections import Detections


@dataclass(frozen=True, eq=False)  # holds arrays: identity, not value, equality
class Tracked:
    """Tracked objects of one frame: the detector's columns under the detector's names (`xyxy (N,4)`
    pixels, `score (N,)`, `class_name (N,)`, see `models.detection.Detections`) plus `track_id (N,)`
    (>= 0) and the frame size, so normalised zones can be resolved."""

    xyxy: np.ndarray
    score: np.ndarray
    class_name: np.ndarray
    track_id: np.ndarray
    width: int
    height: int

    def __len__(self) -> int:
        return len(self.track_id)

    @staticmethod
    def build(xyxy, score, class_name, track_id, width: int, height: int) -> Tracked:
        """Make a Tracked from plain sequences (tests and synthetic tracks use this)."""
        return Tracked(
            xyxy=np.asarray(xyxy, dtype=np.float64).reshape(-1, 4),
            score=np.asarray(score, dtype=np.float64).reshape(-1),
            class_name=np.asarray(list(class_name), dtype=object).reshape(-1),
            track_id=np.asarray(track_id, dtype=np.int64).reshape(-1),
            width=int(width),
            height=int(height),
        )

    @staticmethod
    def empty(width: int, height: int) -> Tracked:
        return Tracked.build(np.zeros((0, 4)), [], [], [], width, height)

    def select(self, mask: np.ndarray) -> Tracked:
        return Tracked(self.xyxy[mask], self.score[mask], self.class_name[mask], self.track_id[mask],
                       self.width, self.height)


@dataclass(frozen=True)
class TrackerConfig:
    """ByteTrack settings in units of video time.

    `lost_track_s`: how long a lost track is kept for re-association; `frame_rate_hz`: the camera's
    analysis rate (ByteTrack scales its buffers with it).
    """

    frame_rate_hz: float = 5.0
    lost_track_s: float = 2.0
    track_activation_threshold: float = 0.35
    high_conf_det_threshold: float = 0.45
    minimum_iou_threshold: float = 0.1
    minimum_consecutive_frames: int = 2


class CameraTracker:
    """ByteTrack for one camera. Not thread-safe: one camera's frames arrive in order on one worker.

    Example: `CameraTracker().update(xyxy, scores, names, ts_s=1.2, width=640, height=360)`.
    """

    def __init__(self, config: TrackerConfig | None = None, mapping: ClassMapping | None = None) -> None:
        self.config = config or TrackerConfig()
        self.mapping = mapping or ClassMapping()
        self._last_ts_s: float | None = None
        self._tracker = self._new_tracker()

    def _new_tracker(self) -> ByteTrackTracker:
        c = self.config
        return ByteTrackTracker(
            # The package counts its buffer in 30 fps frames whatever the real rate.
            lost_track_buffer=max(1, round(c.lost_track_s * 30.0)),
            frame_rate=c.frame_rate_hz,
            track_activation_threshold=c.track_activation_threshold,
            minimum_consecutive_frames=c.minimum_consecutive_frames,
            minimum_iou_threshold=c.minimum_iou_threshold,
            high_conf_det_threshold=c.high_conf_det_threshold,
        )

    def update(
        self,
        xyxy: np.ndarray,
        scores: np.ndarray,
        class_names: Sequence[str],
        *,
        ts_s: float,
        width: int,
        height: int,
    ) -> Tracked:
        if self._last_ts_s is not None and ts_s <= self._last_ts_s:
            # Video time went backwards (a file source restarted without an offset): start afresh
            # rather than feeding the Kalman filters a negative time step.
            self._tracker = self._new_tracker()
        self._last_ts_s = ts_s
        xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        names = np.asarray(self.mapping.map_names(list(class_names)), dtype=object).reshape(-1)
        keep = scores >= self.mapping.min_score
        if self.mapping.keep:
            keep &= np.isin(names, list(self.mapping.keep))
        xyxy, scores, names = xyxy[keep], scores[keep], names[keep]
        dets = sv.Detections(
            xyxy=xyxy,
            confidence=scores,
            class_id=np.arange(len(xyxy), dtype=int),  # carries the row index through the tracker
        )
        out = self._tracker.update(dets, timestamp=float(ts_s))
        if len(out) == 0:
            return Tracked.empty(width, height)
        confirmed = out.tracker_id >= 0
        rows = out.class_id[confirmed]
        return Tracked(
            xyxy=out.xyxy[confirmed].astype(np.float64),
            score=out.confidence[confirmed].astype(np.float64),
            class_name=names[rows],
            track_id=out.tracker_id[confirmed].astype(np.int64),
            width=int(width),
            height=int(height),
        )

    def update_detections(self, detections: Detections, *, ts_s: float, width: int, height: int) -> Tracked:
        """Track one frame's output of `models.detection` (columns `xyxy`, `score`, `class_name`)."""
        return self.update(detections.xyxy, detections.score, detections.class_name, ts_s=ts_s, width=width,
                           height=height)

