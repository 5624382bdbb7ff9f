"""Fair degradation and admission when cameras ask for more than the box can analyse.

Every few seconds the stream runner hands the `CapacityGovernor` each live camera's frame counts.
When more than `loss_fraction` of the sampled frames were lost (replaced in the source's one-frame
slot before analysis, or dropped by the batcher's per-camera bound), the box is over capacity:
the governor sets ONE rate scale for every live camera, so that all of them together sample what
the box just analysed (times `headroom`; at most halving it per window). Each camera then runs at the same share of its own
`analysis_fps`, and its status says `over_capacity` with the rate it gets. While nothing is lost
the scale creeps back up (`probe_step` per window) until it is 1 again.

The total analysed rate measured while over capacity is the box's learned capacity; with a
configured `capacity_fps` that value is used instead. `admit()` checks a new camera against it:
policy `refuse` raises `Overloaded` (HTTP 503), `warn` accepts it with a warning, `accept` says
nothing.

>>> gov = CapacityGovernor(CapacityPolicy())
>>> gov.step({"cam1": Counts(sampled=50, lost=20, analysed=30)}, demand_fps=25.0, now_s=2.0)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from hub.errors import Overloaded

log = logging.getLogger(__name__)

Admission = Literal["accept", "warn", "refuse"]


@dataclass(frozen=True)
class CapacityPolicy:
    interval_s: float = 2.0  # how often the governor looks
    loss_fraction: float = 0.05  # lost / sampled above this in a window: over capacity
    # ...and at least this many lost: one frame replaced in its slot while the camera's previous frame
    # was still in the detector is timing jitter (at 1 camera it tripped the governor and set the learned
    # capacity to that camera's own rate, so a second camera was then reported over capacity)
    min_lost_frames: int = 2
    headroom: float = 0.95  # sample this share of what the box managed (room for jitter)
    max_cut: float = 0.5  # one window lowers the scale at most to this share of what it was
    probe_step: float = 1.2  # per calm window, the scale grows by this factor (back to 1 from 0.05 in ~17 windows)
    min_scale: float = 0.05  # never below 5 % of a camera's rate
    admission: Admission = "warn"
    capacity_fps: float | None = None  # analysed frames/s the box serves; None: learned while over capacity


@dataclass(frozen=True)
class Counts:
    """Running totals of one camera: frames sampled by its source, lost before analysis, analysed."""

    sampled: int
    lost: int
    analysed: int


class CapacityGovernor:
    """One rate scale for all live cameras (see the module doc). Not thread-safe: one caller."""

    def __init__(self, policy: CapacityPolicy) -> None:
        self.policy = policy
        self.scale = 1.0
        self.learned_fps: float | None = None
        self.last_fps = 0.0
        self._prev: dict[str, Counts] = {}
        self._prev_s: float | None = None

    @property
    def over_capacity(self) -> bool:
        return self.scale < 1.0

    @property
    def capacity_fps(self) -> float | None:
        return self.policy.capacity_fps or self.learned_fps

    def step(self, counts: dict[str, Counts], demand_fps: float, now_s: float) -> float:
        """Feed the totals of every live camera and their summed `analysis_fps`; returns the scale."""
        prev, prev_s = self._prev, self._prev_s
        self._prev, self._prev_s = dict(counts), now_s
        if prev_s is None or now_s <= prev_s or demand_fps <= 0:
            return self.scale
        common = [c for c in counts if c in prev]  # a camera added in this window has no delta yet
        sampled = sum(counts[c].sampled - prev[c].sampled for c in common)
        lost = sum(counts[c].lost - prev[c].lost for c in common)
        analysed = sum(counts[c].analysed - prev[c].analysed for c in common)
        fps = analysed / (now_s - prev_s)
        self.last_fps = fps
        p = self.policy
        if sampled > 0 and lost > p.loss_fraction * sampled and lost >= p.min_lost_frames:
            self.learned_fps = fps if self.learned_fps is None else 0.5 * (self.learned_fps + fps)
            # at most halved per window: one stall (a warm-up, a pause) must not floor every camera
            scale = max(self.scale * p.max_cut, p.headroom * fps / demand_fps)
        else:
            scale = self.scale * p.probe_step
        scale = min(1.0, max(p.min_scale, scale))
        if (scale < 1.0) != (self.scale < 1.0):
            log.warning("streams: %s capacity (%.1f analysed frames/s for a demand of %.1f); rate scale %.2f",
                        "over" if scale < 1.0 else "back within", fps, demand_fps, scale)
        self.scale = scale
        return scale

    def admit(self, demand_fps: float, extra_fps: float) -> str | None:
        """Check a new camera asking `extra_fps` on top of `demand_fps`; a warning, None, or `Overloaded`."""
        capacity = self.capacity_fps
        full = self.over_capacity or (capacity is not None and demand_fps + extra_fps > capacity)
        if not full or self.policy.admission == "accept":
            return None
        have = f"{capacity:.1f}" if capacity is not None else "unknown"
        message = (f"over capacity: cameras ask {demand_fps + extra_fps:.1f} analysed frames/s, this box serves "
                   f"{have}; every camera runs slower (rate scale {self.scale:.2f})")
        if self.policy.admission == "refuse":
            raise Overloaded(message)
        return message
