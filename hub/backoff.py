"""Exponential back-off, the one implementation (camera reconnects, webhook retries, replica restarts).

>>> backoff_s(1, 0.5, 30.0), backoff_s(3, 0.5, 30.0), backoff_s(10, 0.5, 30.0)
(0.5, 2.0, 30.0)
>>> backoff_s(3, 0.5, 30.0, jitter=0.2)   # uniformly within +-20 % of 2.0
"""

from __future__ import annotations

import random


def backoff_s(failures: int, initial_s: float, max_s: float, *, jitter: float = 0.0) -> float:
    """Delay before the next attempt after the n-th consecutive failure (1-based): `initial_s`
    doubling per failure, capped at `max_s`; `jitter` spreads it by +-that fraction so many
    clients that failed together do not retry together."""
    delay = min(max_s, initial_s * 2.0 ** max(0, failures - 1))
    return delay * random.uniform(1.0 - jitter, 1.0 + jitter) if jitter else delay
