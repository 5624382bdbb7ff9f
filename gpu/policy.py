"""How a `DynamicBatcher` forms batches and what it does when it is full.

>>> policy = BatchPolicy(max_batch_size=32, max_wait_ms=10, max_queue=256, max_queue_per_key=2)
>>> policy.max_wait_s
0.01
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DropPolicy = Literal["oldest", "newest"]


@dataclass(frozen=True)
class BatchPolicy:
    """Batch formation and back-pressure of one `DynamicBatcher`.

    - A batch is flushed when `max_batch_size` items wait, or when the oldest waiting item has
      waited `max_wait_ms` (so a lone camera still gets answers within that bound).
    - At most `max_queue` items wait in total and at most `max_queue_per_key` per key (camera);
      `None` means no per-key bound. A producer is never blocked: when a bound is hit, `drop`
      decides who loses. `"oldest"` drops the oldest waiting item of the same key (a camera's stale
      frame) — or, when that key has nothing waiting, the oldest item of the key with the most
      waiting; `"newest"` refuses the incoming item. Every drop is counted and its future fails
      with `gpu.batcher.Dropped`.

    Example: `BatchPolicy(max_batch_size=16, max_wait_ms=8)` — the default for a CPU detector.
    """

    max_batch_size: int = 16
    max_wait_ms: float = 8.0
    max_queue: int = 256
    max_queue_per_key: int | None = None
    drop: DropPolicy = "oldest"
    max_age_ms: float | None = None  # an item waiting longer leaves unrun as a drop (None: no limit)
    max_batch_ms: float | None = None  # cut batches to what should run this long, by the measured time per item

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {self.max_queue}")
        if self.max_queue_per_key is not None and self.max_queue_per_key < 1:
            raise ValueError(f"max_queue_per_key must be >= 1 or None, got {self.max_queue_per_key}")
        if self.max_batch_ms is not None and self.max_batch_ms <= 0:
            raise ValueError(f"max_batch_ms must be > 0 or None, got {self.max_batch_ms}")
        if self.max_age_ms is not None and self.max_age_ms <= 0:
            raise ValueError(f"max_age_ms must be > 0 or None, got {self.max_age_ms}")
        if self.drop not in ("oldest", "newest"):
            raise ValueError(f"drop must be 'oldest' or 'newest', got {self.drop!r}")

    @property
    def max_wait_s(self) -> float:
        return self.max_wait_ms / 1000.0

    @property
    def max_batch_s(self) -> float | None:
        return None if self.max_batch_ms is None else self.max_batch_ms / 1000.0

    @property
    def max_age_s(self) -> float | None:
        return None if self.max_age_ms is None else self.max_age_ms / 1000.0
