"""Illegal parking: a vehicle that stops in a no-parking zone for longer than the zone allows.

Two ways to tell that a vehicle stands still:
- `method="stop"`: its Kalman-filtered road-plane speed stays under `max_speed_kmh` for
  `min_stopped_s` (`stop.py`); metres and km/h with a camera calibration, box-size-normalised
  speed without. The episode is dated from the moment it stopped. Use this one (see `PRESETS`).
- `method="dwell"`: its bottom centre moves less than `max_motion_px` for `min_dwell_s` (`base.py`),
  the original pixel rule, kept for existing configs.

One event per episode, an update when it ends.

>>> rule = ParkingRule(zone=Zone("kerb", [(0, 300), (640, 300), (640, 360), (0, 360)]), min_dwell_s=180)
>>> state = new_state(rule, camera_id="cam17")
>>> for frame in frames:
...     for event in update(rule, state, tracked_of(frame), frame.ts_s):
...         store.record(event, frame.image)
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.calibration import Calibration
from pipelines.rules.base import DwellParams, DwellState, Event, update_dwell
from pipelines.rules.motion import MotionParams, RoadMotion
from pipelines.rules.stop import StopParams, StopState, update_stop
from pipelines.track import Tracked
from pipelines.zones import VEHICLE_CLASSES, Zone

KIND = "illegal_parking"


@dataclass(frozen=True)
class ParkingRule:
    """A no-parking zone and its limits. Example: `ParkingRule(zone, min_dwell_s=180, max_motion_px=15)`.

    `min_dwell_s` is the zone's limit in both methods: how long a vehicle may stand there.
    """

    zone: Zone
    min_dwell_s: float = 180.0
    max_motion_px: float = 20.0
    exit_grace_s: float = 5.0
    classes: frozenset[str] = VEHICLE_CLASSES
    reassociate_px: float | None = None
    method: str = "dwell"  # or "stop"
    max_speed_kmh: float = 10.0
    min_stopped_s: float = 2.0
    resume_s: float = 1.0
    resume_speed_kmh: float | None = None
    reassociate_m: float = 4.0
    edge_margin_frac: float = 0.02
    calibration: Calibration | None = None
    motion: MotionParams = MotionParams()

    def __post_init__(self) -> None:
        if self.method not in ("dwell", "stop"):
            raise ValueError(f"parking method must be 'dwell' or 'stop', not {self.method!r}")

    @property
    def params(self) -> DwellParams:
        return DwellParams(
            classes=self.classes, min_dwell_s=self.min_dwell_s, max_motion_px=self.max_motion_px,
            exit_grace_s=self.exit_grace_s, reassociate_px=self.reassociate_px, anchor="bottom_centre",
        )

    @property
    def stop_params(self) -> StopParams:
        return StopParams(
            classes=self.classes, limit_s=self.min_dwell_s, max_speed_kmh=self.max_speed_kmh,
            min_stopped_s=self.min_stopped_s, resume_s=self.resume_s,
            resume_speed_kmh=self.resume_speed_kmh, reassociate_m=self.reassociate_m,
            exit_grace_s=self.exit_grace_s, edge_margin_frac=self.edge_margin_frac,
        )


def new_state(rule: ParkingRule, camera_id: str) -> DwellState | StopState:
    if rule.method == "stop":
        return StopState(camera_id=camera_id, motion=RoadMotion(rule.motion, rule.calibration))
    return DwellState(camera_id=camera_id)


def update(rule: ParkingRule, state: DwellState | StopState, tracked: Tracked, ts_s: float) -> list[Event]:
    """Advance one frame; returns the events that started or ended at `ts_s`."""
    if isinstance(state, StopState):
        return update_stop(rule.stop_params, rule.zone, state, tracked, ts_s, rule=KIND)
    return update_dwell(rule.params, rule.zone, state, tracked, ts_s, rule=KIND)
