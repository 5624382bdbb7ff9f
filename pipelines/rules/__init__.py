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
from pipelines.rules.spill import SpillRule, StaticChange
from pipelines.track import Tracked

Rule = ParkingRule | SpillRule

__all__ = [
    "DwellParams", "DwellState", "Event", "ParkingRule", "Rule", "SpillRule", "StaticChange",
    "new_state", "update", "update_dwell", "wanted_classes",
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
