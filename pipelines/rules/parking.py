"""Illegal parking: a vehicle whose bottom centre stays in a no-parking zone, moving less than
`max_motion_px`, for `min_dwell_s` of video time. One event per episode, an update when it ends.

>>> rule = ParkingRule(zone=Zone("kerb", [(0, 300), (640, 300), (640, 360), (0, 360)]), min_dwell_s=180)
>>> state = new_state(rule, camera_id="cam17")
>>> for frame in frames:
...     for event in update(rule, state, tracked_of(frame), frame.ts_s):
...         store.record(event, frame.image)
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.rules.base import DwellParams, DwellState, Event, update_dwell
from pipelines.track import Tracked
from pipelines.zones import VEHICLE_CLASSES, Zone

KIND = "illegal_parking"


@dataclass(frozen=True)
class ParkingRule:
    """A no-parking zone and its limits. Example: `ParkingRule(zone, min_dwell_s=180, max_motion_px=15)`."""

    zone: Zone
    min_dwell_s: float = 180.0
    max_motion_px: float = 20.0
    exit_grace_s: float = 5.0
    classes: frozenset[str] = VEHICLE_CLASSES
    reassociate_px: float | None = None

    @property
    def params(self) -> DwellParams:
        return DwellParams(
            classes=self.classes, min_dwell_s=self.min_dwell_s, max_motion_px=self.max_motion_px,
            exit_grace_s=self.exit_grace_s, reassociate_px=self.reassociate_px, anchor="bottom_centre",
        )


def new_state(rule: ParkingRule, camera_id: str) -> DwellState:
    return DwellState(camera_id=camera_id)


def update(rule: ParkingRule, state: DwellState, tracked: Tracked, ts_s: float) -> list[Event]:
    """Advance one frame; returns the events that started or ended at `ts_s`."""
    return update_dwell(rule.params, rule.zone, state, tracked, ts_s, rule=KIND)
