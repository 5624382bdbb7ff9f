"""The batching core: batch policy, dynamic batcher, device collation, batched NMS, device choice.

>>> from gpu import BatchPolicy, DynamicBatcher
>>> batcher = DynamicBatcher(detector.detect_arrays, BatchPolicy(max_batch_size=32, max_wait_ms=10))

Heavy pieces (torch-based collation/NMS) import lazily: `from gpu.collate import DeviceCollator`.
"""

from gpu.batcher import BatcherStats, Dropped, DynamicBatcher
from gpu.policy import BatchPolicy

__all__ = ["BatchPolicy", "BatcherStats", "Dropped", "DynamicBatcher"]
