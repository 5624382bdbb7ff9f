"""`Detections`: the columnar result of one frame (numpy arrays until the API edge).

>>> d = detector.detect_arrays([frame])[0]
>>> d.xyxy.shape, d.class_id.dtype, d.class_name[:2]
((5, 4), dtype('int64'), ['bus', 'person'])
>>> cars = d.filter(d.class_id == 2)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Detections:
    """Boxes of one frame, best score first. `xyxy` is in the frame's own pixels (float32 [N, 4]),
    `class_id` int64 [N] indexes `names` (all classes of the model), `score` float32 [N]."""

    xyxy: np.ndarray
    class_id: np.ndarray
    score: np.ndarray
    names: tuple[str, ...]
    image_width: int
    image_height: int
    model: tuple[str, str] | None = None  # (registered name, version) that produced the boxes, when known

    def __post_init__(self) -> None:
        n = len(self.score)
        if self.xyxy.shape != (n, 4) or self.class_id.shape != (n,):
            raise ValueError(f"columns disagree: xyxy {self.xyxy.shape}, class_id {self.class_id.shape}, score ({n},)")
        for column in (self.xyxy, self.class_id, self.score):
            column.setflags(write=False)  # frozen means the arrays too

    def __len__(self) -> int:
        return len(self.score)

    @property
    def class_name(self) -> list[str]:
        """Each box's class name: the column's name in `pipelines.track.Tracked`, `Box` and events too."""
        return [self.names[i] for i in self.class_id.tolist()]

    def filter(self, mask: np.ndarray) -> Detections:
        return Detections(
            self.xyxy[mask], self.class_id[mask], self.score[mask], self.names, self.image_width, self.image_height,
            self.model,
        )

    @classmethod
    def empty(cls, names: tuple[str, ...], image_width: int, image_height: int) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32), names, image_width, image_height
        )
