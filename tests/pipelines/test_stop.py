"""Table-driven tests of the speed-based stop detector (`method: stop`) on a synthetic calibrated
road camera (tests/pipelines/synth_road.py): the cases the pixel dwell rule got wrong on RoadTrack."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hub.contract import validate_as
from hub.errors import InvalidInput
from pipelines import rules
from pipelines.rules import ParkingRule
from pipelines.rules.presets import PARKING_PRESETS
from pipelines.rules.stop import _covered_frac, update_stop
from pipelines.stream_config import CameraSpec
from pipelines.track import Tracked
from pipelines.zones import Zone
from tests.pipelines import synth_road as sr
from tests.pipelines.synth_road import Path, cross, cruise, drive_then_stop, one_id, parked

ROAD = Zone("road", [(0, 290), (sr.W, 290), (sr.W, sr.H), (0, sr.H)])
HIGHWAY = {k: v for k, v in PARKING_PRESETS["highway-stop"].items()}
KMH = 1 / 3.6


def highway(calibrated: bool = True, **over) -> ParkingRule:
    return ParkingRule(zone=ROAD, calibration=sr.CALIBRATION if calibrated else None, **{**HIGHWAY, **over})


def run(rule: ParkingRule, paths: list[Path], t_end: float, jitter_frac: float = 0.03, seed: int = 0):
    state = rules.new_state(rule, "cam-road")
    events, alarm_frames = [], 0
    for t, tracked in sr.frames(paths, t_end, jitter_frac=jitter_frac, seed=seed):
        events.extend(rules.update(rule, state, tracked, t))
        alarm_frames += bool(rules.active_alarms(state))
    return events, alarm_frames, state


def split_ids(first: int, every_s: float):
    """A far vehicle the tracker loses and re-finds under a new id every `every_s` seconds."""
    return lambda t: first + int(t // every_s)


# (case, rule, paths, t_end, box jitter, expected stop onsets (s; one per started event), )
CASES = [
    ("far vehicle crawling at 15 km/h in a jam moves < 20 px in 20 s: not a stop",
     highway(), [Path(0.0, 20.0, cruise(-1.75, 140.0, 15 * KMH), one_id(1))], 20.0, 0.03, []),
    ("far vehicle that brakes and stands 150 m out fires, dated from the stop",
     highway(), [Path(0.0, 30.0, drive_then_stop(-1.75, 100.0, 80 * KMH, stop_at_s=8.0), one_id(1))], 30.0, 0.03,
     [8.0]),
    ("near parked vehicle whose box jitters by 10 % (+-8 px) fires",
     highway(), [Path(1.0, 20.0, parked(3.5, 14.0), one_id(1))], 20.0, 0.10, [1.0]),
    ("near parked vehicle, no calibration: box-size-normalised speed still fires",
     highway(calibrated=False), [Path(1.0, 20.0, parked(3.5, 14.0), one_id(1))], 20.0, 0.10, [1.0]),
    ("near car driving away at 60 km/h does not fire",
     highway(), [Path(0.0, 8.0, cruise(1.75, 13.0, 60 * KMH), one_id(1))], 8.0, 0.03, []),
    ("car crossing the view at 20 km/h, no calibration: box-size-normalised speed does not fire",
     highway(calibrated=False), [Path(0.0, 4.0, cross(30.0, -10.0, 20 * KMH), one_id(1))], 4.0, 0.03, []),
    ("two vehicles stopped side by side, 2.5 m apart: two episodes",
     highway(), [Path(1.0, 25.0, parked(-1.5, 60.0), one_id(1)), Path(3.0, 25.0, parked(1.0, 60.0), one_id(2))],
     25.0, 0.03, [1.0, 3.0]),
    ("a stop split into four track ids with gaps is one episode from the first stop",
     highway(), [Path(0.0, 30.0, drive_then_stop(1.75, 90.0, 60 * KMH, stop_at_s=6.0), split_ids(1, 7.0),
                      gaps=((7.0, 7.6), (14.0, 14.4), (21.0, 21.8)))], 30.0, 0.03, [6.0]),
    ("a stop of 1.2 s (shorter than min_stopped_s) does not fire",
     highway(), [Path(0.0, 5.0, drive_then_stop(1.75, 40.0, 30 * KMH, stop_at_s=4.0), one_id(1)),
                 Path(5.2, 12.0, cruise(1.75, 40.0 + 30 * KMH * 4.0 - 0.5 * (30 * KMH) ** 2 / 3.0, 8.0, 5.2),
                      one_id(1))], 12.0, 0.03, []),
    ("urban preset: a 60 s wait at a red light is shorter than the 180 s limit",
     ParkingRule(zone=ROAD, calibration=sr.CALIBRATION, **PARKING_PRESETS["urban-no-parking"]),
     [Path(0.0, 70.0, parked(3.5, 25.0), one_id(1))], 70.0, 0.03, []),
    ("urban preset: standing 200 s fires once, at the 180 s limit",
     ParkingRule(zone=ROAD, calibration=sr.CALIBRATION, **PARKING_PRESETS["urban-no-parking"]),
     [Path(0.0, 200.0, parked(3.5, 25.0), one_id(1))], 200.0, 0.03, [0.0]),
]


@pytest.mark.parametrize("case,rule,paths,t_end,jitter,onsets", CASES, ids=[c[0] for c in CASES])
def test_stop_detector(case, rule, paths, t_end, jitter, onsets):
    events, alarm_frames, state = run(rule, paths, t_end, jitter_frac=jitter)
    started = sorted((e for e in events if e.phase == "started"), key=lambda e: e.started_ts)
    assert len(started) == len(onsets), [(e.phase, e.track_id, e.started_ts, e.fired_ts) for e in events]
    for e, onset in zip(started, onsets, strict=True):
        # The filter needs a moment to see the vehicle stand still (more far away): the episode is
        # dated within 1.5 s of the real stop, and fires once the stop has lasted the zone's limit.
        assert onset - 0.2 <= e.started_ts <= onset + 1.5, e
        assert e.fired_ts - e.started_ts == pytest.approx(max(rule.min_dwell_s, rule.min_stopped_s), abs=0.15)
        assert e.rule == "illegal_parking" and e.zone_id == "road"
    if onsets and len(started) == 1:
        # Once fired, the alarm is on in (nearly) every frame the vehicle is seen, whatever its id.
        visible_after = (t_end - started[0].fired_ts) * sr.FPS - sum(
            (b - a) * sr.FPS for p in paths for a, b in p.gaps if a >= started[0].fired_ts)
        assert alarm_frames >= 0.9 * visible_after
    assert len(state) <= 2 * len(paths) + 2  # only live stops are kept


def test_stop_ends_when_the_vehicle_drives_on_and_state_stays_bounded():
    paths = [Path(0.0, 40.0, lambda t: (1.75, 30.0) if t < 20.0 else (1.75, 30.0 + 25.0 * (t - 20.0) ** 2 / 2),
                  one_id(1))]
    events, _, state = run(highway(), paths, 40.0)
    assert [e.phase for e in events] == ["started", "ended"]
    assert events[1].ended_ts == pytest.approx(20.0, abs=1.5)
    assert events[0].event_id == events[1].event_id
    assert len(state) == 0 and len(state.motion) <= 1


def test_presets_come_through_the_camera_config_and_fields_override_them():
    spec = CameraSpec.model_validate({
        "camera_id": "cam-road", "url": "rtsp://10.0.0.1/s",
        "zones": [{"zone_id": "road", "points": [[0, 0.4], [1, 0.4], [1, 1], [0, 1]], "normalized": True}],
        "calibration": {"image_points": [list(p) for p in sr.IMAGE_POINTS],
                        "road_points": [list(p) for p in sr.ROAD_POINTS_M]},
        "rules": [{"kind": "illegal_parking", "zone_id": "road", "preset": "highway-stop", "max_speed_kmh": 8},
                  {"kind": "illegal_parking", "zone_id": "road", "preset": "urban-no-parking"},
                  {"kind": "illegal_parking", "zone_id": "road"}],
    })
    hw, urban, legacy = spec.plan().rules
    assert (hw.method, hw.max_speed_kmh, hw.min_dwell_s, hw.min_stopped_s) == ("stop", 8.0, 2.0, 3.0)
    assert (urban.method, urban.min_dwell_s, urban.max_speed_kmh) == ("stop", 180.0, 5.0)
    assert (legacy.method, legacy.min_dwell_s, legacy.max_motion_px) == ("dwell", 180.0, 20.0)
    assert hw.calibration is not None and hw.calibration is urban.calibration


def test_a_stored_camera_keeps_its_preset_values_after_a_restart():
    """The stream manager persists `spec.model_dump()`: a reload must give the same rule."""
    body = {"camera_id": "cam-road", "url": "rtsp://10.0.0.1/s",
            "zones": [{"zone_id": "road", "points": [[0, 0.4], [1, 0.4], [1, 1], [0, 1]], "normalized": True}],
            "rules": [{"kind": "illegal_parking", "zone_id": "road", "preset": "highway-stop", "exit_grace_s": 7}]}
    first = CameraSpec.model_validate(body)
    again = CameraSpec.model_validate(first.model_dump(mode="json"))
    assert first.plan().rules == again.plan().rules
    assert (again.plan().rules[0].method, again.plan().rules[0].exit_grace_s) == ("stop", 7.0)


@pytest.mark.parametrize("preset", ["no-such-preset", {}, [], ["highway-stop"], 3])
def test_an_unknown_or_malformed_preset_is_a_400_naming_the_field(preset):
    """Found by the fuzz suite: a JSON object as `preset` was a 500 (unhashable dict)."""
    body = {"camera_id": "cam-road", "url": "rtsp://10.0.0.1/s",
            "zones": [{"zone_id": "road", "points": [[0, 0], [1, 0], [1, 1]], "normalized": True}],
            "rules": [{"kind": "illegal_parking", "zone_id": "road", "preset": preset}]}
    with pytest.raises(InvalidInput) as caught:
        validate_as(CameraSpec, body)
    assert caught.value.status_code == 400 and "preset" in str(caught.value)


def boxes_run(rule: ParkingRule, box_at, t_end: float, track_id: int = 1, score_at=lambda t: 0.8,
              class_name: str = "car"):
    """One vehicle given by its image box at each time (cut-off boxes cannot come from road paths)."""
    state = rules.new_state(rule, "cam-road")
    events = []
    for k in range(int(round(t_end * sr.FPS))):
        t = k / sr.FPS
        tracked = Tracked.build([box_at(t)], [score_at(t)], [class_name], [track_id], sr.W, sr.H)
        events.extend(rules.update(rule, state, tracked, t))
    return [e for e in events if e.phase == "started"]


# (case, the box at time t (s), fires)
EDGE_CASES = [
    ("a lorry leaving the view at the bottom: its box's bottom is pinned to the frame's edge",
     lambda t: [560, 300 + 60 * t, 760, sr.H - 2], False),
    ("the same box 30 px above the bottom edge, standing still: a stop",
     lambda t: [560, 300, 760, sr.H - 30], True),
    ("a van leaving at the right edge: its box shrinks against the edge, bottom centre crawls",
     lambda t: [1080 + 30 * t, 400, sr.W, 520], False),
    ("a van leaving at the left edge", lambda t: [0, 400, 200 - 30 * t, 520], False),
]


@pytest.mark.parametrize("case,box_at,fires", EDGE_CASES, ids=[c[0] for c in EDGE_CASES])
def test_boxes_cut_off_by_the_frame_are_not_stops(case, box_at, fires):
    assert bool(boxes_run(highway(), box_at, 6.0)) == fires


PARKED_AT_THE_BOTTOM = [  # (preset, seconds run, fires): a car parked at the kerb along the bottom of the view
    ("highway-stop", 10.0, False),  # seconds-long alarms: a cut-off box is more likely a vehicle leaving
    ("urban-no-parking", 190.0, True),  # minutes: one leaving is long gone; a parked, cut-off car is parked
]


@pytest.mark.parametrize("preset,t_end,fires", PARKED_AT_THE_BOTTOM)
def test_edge_margin_is_a_preset_field(preset, t_end, fires):
    rule = ParkingRule(zone=ROAD, calibration=sr.CALIBRATION, **PARKING_PRESETS[preset])
    assert bool(boxes_run(rule, lambda t: [560, 420, 760, sr.H - 1], t_end)) == fires


def test_a_vehicle_seen_elsewhere_meanwhile_does_not_take_over_a_hidden_stop():
    """Car 1 stands (fires), then is hidden. Car 2, tracked from further back the whole time, stops
    for 1.5 s on the same spot: it is not car 1 under a new id (it was seen while car 1 was), so it
    neither inherits car 1's stop (and its age) nor fires on its own."""
    stopping = drive_then_stop(1.75, 20.0, 50 * KMH, stop_at_s=10.5)
    paths = [Path(0.0, 8.0, parked(*stopping(30.0)), one_id(1)),
             Path(0.0, 12.0, stopping, one_id(2)),
             Path(12.0, 20.0, cruise(1.75, stopping(12.0)[1], 50 * KMH, 12.0), one_id(2))]
    events, _, _ = run(highway(), paths, 20.0)
    assert [(e.phase, e.track_id) for e in events] == [("started", 1), ("ended", 1)]


@pytest.mark.parametrize("pull_away_kmh", [6.0, 15.0, 19.0])
def test_a_stop_ends_once_the_vehicle_rolled_away_however_slowly(pull_away_kmh):
    """Under the 20 km/h resume speed, only the distance from where it stood tells that it left:
    at 15 km/h the stop ends within about 2 x leave_m of rolling, not when the car leaves the view."""
    leave_s = 15.0
    paths = [Path(0.0, 40.0, lambda t: (1.75, 30.0 + pull_away_kmh * KMH * max(0.0, t - leave_s)), one_id(1))]
    events, _, _ = run(highway(), paths, 40.0)
    ended = [e for e in events if e.phase == "ended"]
    rolled_s = 2 * highway().stop_params.leave_m / (pull_away_kmh * KMH)
    if pull_away_kmh < highway().max_speed_kmh:  # a crawl under the stop speed is still a stop
        assert not ended
    else:
        assert len(ended) == 1 and leave_s < ended[0].ended_ts <= leave_s + rolled_s, ended


# (case, detection score at time t, fired at (s) or None)
SCORE_CASES = [
    ("a standing car the detector is sure of fires once stopped 3 s (the filter settles in 0.2 s)",
     lambda t: 0.8, 3.2),
    ("one seen only through doubtful boxes (score 0.15) never fires", lambda t: 0.15, None),
    ("doubtful for 3 s, then sure: fires once the mean score reaches 0.2", lambda t: 0.1 if t < 3.0 else 0.9, 3.4),
]


@pytest.mark.parametrize("case,score_at,fired_s", SCORE_CASES, ids=[c[0] for c in SCORE_CASES])
def test_a_stop_fires_only_on_boxes_the_detector_believes(case, score_at, fired_s):
    started = boxes_run(highway(), lambda t: [560, 300, 760, sr.H - 30], 8.0, score_at=score_at)
    assert [e.fired_ts for e in started] == ([] if fired_s is None else [pytest.approx(fired_s, abs=0.15)])


def box_on_road(x_m: float, y_m: float, width_m: float, height_m: float = 1.6) -> list[float]:
    """The image box of something standing at (x_m, y_m) whose bottom edge spans `width_m` on the road."""
    (u1, v), (u2, _) = sr.project(x_m - width_m / 2, y_m), sr.project(x_m + width_m / 2, y_m)
    return [u1, v - sr.FOCAL_PX * height_m / y_m, u2, v]


# (case, class, road width (m) of the box at time t, calibrated, fires): 40 m out, standing 6 s
WIDTH_CASES = [
    ("a car 1.8 m wide", "car", lambda t: 1.8, True, True),
    ("a lorry 2.5 m wide", "truck", lambda t: 2.5, True, True),
    ("a motorcycle 0.8 m wide", "motorcycle", lambda t: 0.8, True, True),
    ("a 'truck' 1.2 m wide on the road (a roadside cabinet, a person): no truck", "truck", lambda t: 1.2, True, False),
    ("a 'car' 1.0 m wide on the road: no car", "car", lambda t: 1.0, True, False),
    ("a car half hidden (1.0 m of it seen) for 2 of its 6 s: most boxes are a car's, it fires",
     "car", lambda t: 1.0 if 1.0 <= t < 3.0 else 1.8, True, True),
    ("narrow most of the time, wide for a while: most boxes are no car's, it never fires",
     "car", lambda t: 3.2 if 2.0 <= t < 3.0 else 1.0, True, False),
    ("without a calibration there is no road width to judge: the 1.2 m 'truck' fires", "truck", lambda t: 1.2,
     False, True),
]


@pytest.mark.parametrize("case,class_name,width_at,calibrated,fires", WIDTH_CASES, ids=[c[0] for c in WIDTH_CASES])
def test_a_stop_fires_only_on_boxes_as_wide_as_a_vehicle_of_their_class(case, class_name, width_at, calibrated,
                                                                         fires):
    started = boxes_run(highway(calibrated), lambda t: box_on_road(1.75, 40.0, width_at(t)), 6.0,
                        class_name=class_name)
    assert bool(started) == fires


# (case, track id at time t, gaps with no box, started events): one car standing 40 m out for 30 s
ID_SWAP_CASES = [
    ("ByteTrack swaps the id to 2 and back to 1: one episode", lambda t: 2 if 8.0 <= t < 14.0 else 1,
     ((7.5, 8.0), (14.0, 14.5)), 1),
    ("ids 1, 2, 3, then 1 again: one episode", lambda t: 1 if t < 6.0 or t >= 12.0 else 2 if t < 9.0 else 3,
     ((5.5, 6.0), (8.5, 9.0), (11.5, 12.0)), 1),
]


@pytest.mark.parametrize("case,track_id,gaps,started", ID_SWAP_CASES, ids=[c[0] for c in ID_SWAP_CASES])
def test_an_id_the_stopped_vehicle_had_before_continues_its_stop(case, track_id, gaps, started):
    events, _, _ = run(highway(), [Path(0.0, 30.0, parked(1.75, 40.0), track_id, gaps=gaps)], 30.0)
    assert len([e for e in events if e.phase == "started"]) == started, [(e.phase, e.track_id) for e in events]


def vehicles_run(rule: ParkingRule, vehicles, t_end: float, **stop_over) -> dict[int, float]:
    """Standing vehicles given as (track id, class, image box, seen from, seen until): the fire time
    of each track id's stop (`stop_over`: `StopParams` fields that are no preset fields)."""
    params = replace(rule.stop_params, **stop_over)
    state = rules.new_state(rule, "cam-road")
    fired: dict[int, float] = {}
    for k in range(int(round(t_end * sr.FPS))):
        t = k / sr.FPS
        seen = [v for v in vehicles if v[3] <= t < v[4]]
        tracked = Tracked.build([v[2] for v in seen], [0.8] * len(seen), [v[1] for v in seen], [v[0] for v in seen],
                                sr.W, sr.H)
        events = update_stop(params, rule.zone, state, tracked, t, rule="illegal_parking")
        fired |= {e.track_id: e.fired_ts for e in events if e.phase == "started"}
    return fired


LORRY_A = ["truck", box_on_road(0.0, 40.0, 2.5, 3.2)]  # [609, 300, 671, 380]
LORRY_B = ["truck", box_on_road(2.0, 44.0, 2.5, 3.2)]  # [657, 298, 714, 371]: the next lane, 4 m further
BUS_60 = ["bus", box_on_road(0.0, 60.0, 2.5, 4.0)]
# (case, StopParams overrides, vehicles, t_end, fire times by track id): boxes over vehicles already alarmed
OVERLAP_CASES = [
    ("a duplicate box straddling two alarmed lorries (95 % over them) is no third stop", {},
     [(1, *LORRY_A, 0.0, 12.0), (2, *LORRY_B, 0.0, 12.0), (3, "truck", [640, 300, 700, 378], 5.0, 12.0)], 12.0,
     {1: 3.2, 2: 3.2}),
    ("the same with the hold turned off (max_overlap_frac 1): a third stop", {"max_overlap_frac": 1.0},
     [(1, *LORRY_A, 0.0, 12.0), (2, *LORRY_B, 0.0, 12.0), (3, "truck", [640, 300, 700, 378], 5.0, 12.0)], 12.0,
     {1: 3.2, 2: 3.2, 3: 8.2}),
    ("a car beside the lorries, 40 % of its box over one, is a third stop", {},
     [(1, *LORRY_A, 0.0, 12.0), (2, *LORRY_B, 0.0, 12.0), (3, "car", [690, 300, 750, 360], 5.0, 12.0)], 12.0,
     {1: 3.2, 2: 3.2, 3: 8.2}),
    ("two overlapping boxes stopping together both fire: only an alarmed vehicle holds another", {},
     [(1, *LORRY_A, 0.0, 8.0), (2, "truck", [615, 300, 677, 380], 0.0, 8.0)], 8.0, {1: 3.2, 2: 3.2}),
    ("a car 1 m in front of an alarmed bus 60 m out, its box 78 % over the bus's, is held; once the bus is gone "
     "it fires in about min_stopped_s x ln 2, not as long again as it was held", {},
     [(1, *BUS_60, 0.0, 8.0), (2, "car", box_on_road(0.0, 55.0, 1.8, 1.5), 4.0, 16.0)], 16.0,
     {1: 3.6, 2: 10.1}),
]


@pytest.mark.parametrize("case,over,vehicles,t_end,fired", OVERLAP_CASES, ids=[c[0] for c in OVERLAP_CASES])
def test_a_box_lying_over_vehicles_already_alarmed_does_not_fire(case, over, vehicles, t_end, fired):
    got = vehicles_run(highway(), vehicles, t_end, **over)
    assert got == {k: pytest.approx(v, abs=0.25) for k, v in fired.items()}, got


@pytest.mark.parametrize("box,others,frac", [
    ([0, 0, 10, 10], [], 0.0),
    ([0, 0, 10, 10], [[5, 0, 20, 10]], 0.5),
    ([0, 0, 10, 10], [[5, 0, 20, 10], [-5, 0, 5, 10]], 1.0),  # two halves: the union, not one box
    ([0, 0, 10, 10], [[0, 0, 6, 10], [4, 0, 10, 5]], 0.8),  # overlapping others are not counted twice
    ([0, 0, 10, 10], [[20, 20, 30, 30]], 0.0),
])
def test_covered_fraction_is_of_the_union(box, others, frac):
    assert _covered_frac(tuple(box), [tuple(o) for o in others]) == pytest.approx(frac)
