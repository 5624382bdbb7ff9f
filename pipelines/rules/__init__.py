"""Scenario rules: pure functions of video time with bounded per-camera state.

Every rule module has `new_state(rule, camera_id)` and `update(rule, state, tracked, ts_s) -> list[Event]`;
the spill rule also takes the frame (`image=`) for its model-free static-change detector.

>>> state = new_state(rule, "cam17")
>>> events = update(rule, state, tracked, ts_s, image=frame.image)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.rules import parking, spill
from pipelines.rules.base import DwellParams, DwellState, Event, update_dwell
from pipelines.rules.parking import ParkingRule
from pipelines.rules.spill import SpillRule, SpillState, StaticChange
from pipelines.rules.stop import StopParams, StopState, active_stop_alarms, update_stop
from pipelines.track import Tracked

Rule = ParkingRule | SpillRule

__all__ = [
    "DwellParams", "DwellState", "Event", "ParkingRule", "Rule", "SpillRule", "StaticChange", "StopParams",
    "StopState", "active_alarms", "new_state", "update", "update_dwell", "update_stop", "wanted_classes",
]


def new_state(rule: Rule, camera_id: str) -> Any:
    if isinstance(rule, ParkingRule):
        return parking.new_state(rule, camera_id)
    return spill.new_state(rule, camera_id)


def update(rule: Rule, state: Any, tracked: Tracked, ts_s: float, image: np.ndarray | None = None) -> list[Event]:
    if isinstance(rule, ParkingRule):
        return parking.update(rule, state, tracked, ts_s)
    return spill.update(rule, state, tracked, ts_s, image=image)


def wanted_classes(rules: list[Rule]) -> frozenset[str]:
    """Classes the tracker must keep for these rules (rule classes and the spill exclusions)."""
    out: set[str] = set()
    for rule in rules:
        out |= rule.classes
        if isinstance(rule, SpillRule) and rule.static.enabled:
            out |= rule.static.exclude_classes
    return frozenset(out)


def active_alarms(state: Any) -> list[tuple[str, tuple[float, float, float, float]]]:
    """(event_id, box) of every fired episode whose object is seen in the latest frame: what an
    overlay draws in red, and what a benchmark scores frame by frame."""
    if isinstance(state, StopState):
        return active_stop_alarms(state)
    dwell = state.dwell if isinstance(state, SpillState) else state
    return [(ep.event_id, ep.bbox) for ep in dwell.episodes.values()
            if ep.event_id and ep.last_seen_ts == dwell.last_ts]
