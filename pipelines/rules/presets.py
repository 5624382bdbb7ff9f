"""Named settings of the `illegal_parking` rule, each threshold chosen for what it means on a real
road. A camera config names one with `preset:` and may still override single fields.

`highway-stop` — any stop in a running lane or on the hard shoulder of a motorway (seconds):
- `max_speed_kmh: 10` — under walking-to-jogging pace. Free-flowing motorway traffic runs at
  60-120 km/h; a vehicle filtered below 10 km/h is halting, not driving.
- `min_stopped_s: 3` — three seconds under that speed (RoadTrack's own method uses the same): a
  vehicle braking hard (3 m/s^2) from 10 km/h stands within one second, the filter needs about one
  more to be sure far away, and the third lets a vehicle slowed in a jam move on before it counts.
  Chosen on the RoadTrack dev half (docs/benchmarks.md): 2 s gave precision 0.80 / F1 0.89 at 1.5 s
  latency, 3 s 0.85 / 0.92 at 2.1 s, 4 s 0.87 / 0.93 at 2.9 s (one stop missed).
- `min_dwell_s: 2` (the zone's limit) — no stop is allowed, so the alarm fires once the stop is
  certain; the event is dated from the moment the vehicle stopped.
- `resume_s: 1` — driving for a second clearly faster than a stop (over 2 x 10 km/h, so that a
  creeping or jittering stopped vehicle does not flicker) ends it.
- `exit_grace_s: 10` — in heavy traffic, lorries passing in front hide a stopped car for several
  seconds (up to ~6 s on RoadTrack); seen again (under a track id first seen after it was hidden)
  within 10 s, it is the same stop.
- `edge_margin_frac: 0.02` — a box touching the frame's left, right or bottom edge is not used: its
  bottom centre is the edge, not the wheels, so a vehicle leaving the view there reads as standing.
- Every stop rule also (`stop.StopParams` defaults, not preset fields): a stop ends once the vehicle
  has rolled 15 m beyond its detection noise from where it last stood still, however slowly
  (pulling away at 10-20 km/h stays under the resume speed), and it fires only once the mean
  detection score of its boxes is 0.2 or more (RoadTrack's own floor) and, with a calibration, most
  of its boxes are as wide on the road as the narrowest vehicle of their class (a 1.4 m wide "truck"
  is a roadside cabinet or a person); an id the stopped vehicle had before continues its stop; and
  it is held while most of its recent boxes lie three quarters or more over the boxes of vehicles
  already alarmed (two vehicles cannot stand in one place: a duplicate box straddling them; far
  away, a car standing right in front of an alarmed lorry is held too until the lorry has gone).

`urban-no-parking` — a no-parking / no-waiting street zone (minutes):
- `min_dwell_s: 180` — longer than a full signal cycle (60-150 s in most cities), so a queue at a
  red light never fires, and about the "brief stop to drop off" most city rules tolerate.
- `max_speed_kmh: 5` — walking pace: a parked car filters to ~0 km/h, a queue creeping forward
  moves faster than this most of the time.
- `min_stopped_s: 5`, `resume_s: 3`, `exit_grace_s: 15` — buses and pedestrians occlude kerbside
  cars for many seconds; a short shuffle forward is not leaving.
- `edge_margin_frac: 0` — a car parked at the frame's edge (a kerb along the bottom of the view) is
  cut off but still parked, and one leaving the view there is gone long before 180 s.
"""

from __future__ import annotations

from typing import Any

PARKING_PRESETS: dict[str, dict[str, Any]] = {
    "highway-stop": {"method": "stop", "min_dwell_s": 2.0, "max_speed_kmh": 10.0, "min_stopped_s": 3.0,
                     "resume_s": 1.0, "exit_grace_s": 10.0, "reassociate_m": 4.0, "edge_margin_frac": 0.02},
    "urban-no-parking": {"method": "stop", "min_dwell_s": 180.0, "max_speed_kmh": 5.0, "min_stopped_s": 5.0,
                         "resume_s": 3.0, "exit_grace_s": 15.0, "reassociate_m": 3.0, "edge_margin_frac": 0.0},
}


def resolve_parking(preset: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """The rule's fields: the preset's values, overridden by those the config gave explicitly."""
    if preset is None:
        return dict(given)
    if not isinstance(preset, str) or preset not in PARKING_PRESETS:  # a JSON object or list is no name either
        raise ValueError(f"unknown parking preset {preset!r}; known: {sorted(PARKING_PRESETS)}")
    return {**PARKING_PRESETS[preset], **given}
