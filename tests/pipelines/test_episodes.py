"""Episodes end with a reason and continue across a restart. The ledger's cases are table-driven;
the restart and the removal run the real detector on the generated street video (a car parks in
the kerb zone from 3 s to 12 s, debris lies on the road from 4 s to 14 s)."""

from __future__ import annotations

import threading

import pytest

from gpu.batcher import DynamicBatcher
from gpu.policy import BatchPolicy
from pipelines.episodes import EpisodeLedger, same_object
from pipelines.events import EventStore
from pipelines.rules.base import Event
from pipelines.rules.parking import ParkingRule
from pipelines.streams import EventSink, StreamRunner, detect_fn
from pipelines.zones import Zone
from tests.pipelines.test_streams import camera_spec, detector, synth  # noqa: F401 - shared fixtures

KERB = Zone("kerb", [(0, 300), (640, 300), (640, 360), (0, 360)])
RULES = [ParkingRule(zone=KERB, min_dwell_s=4.0, exit_grace_s=1.5)]


def ev(event_id: str, phase: str = "started", box=(100.0, 250.0, 200.0, 340.0), ts: float = 10.0) -> Event:
    return Event(event_id=event_id, camera_id="cam1", rule="illegal_parking", zone_id="kerb", track_id=1,
                 started_ts=ts - 4.0, ended_ts=None if phase == "started" else ts, bbox=box, score=0.8,
                 class_name="car", phase=phase, fired_ts=ts)


@pytest.mark.parametrize("a,b,same", [
    ((100, 250, 200, 340), (100, 250, 200, 340), True),
    ((100, 250, 200, 340), (112, 246, 214, 338), True),  # the detector's box wobbles
    ((100, 250, 200, 340), (130, 250, 230, 340), True),  # same spot (feet 30 px apart)
    ((100, 250, 200, 340), (300, 250, 400, 340), False),  # the next parking bay
])
def test_same_object_across_a_restart(a, b, same):
    assert same_object(a, b) is same


def test_reasons_left_expired_and_closed(tmp_path):
    ledger = EpisodeLedger("cam1", RULES, EventStore.open(tmp_path), max_episode_s=3600.0)
    assert ledger.process([ev("a")], ts_s=10.0, now_wall=0.0) == [(ev("a"), None)]
    assert ledger.process([ev("a", "ended", ts=20.0)], ts_s=20.0, now_wall=10.0) == [(ev("a", "ended", ts=20.0), "left")]
    ledger.process([ev("b"), ev("c", box=(300.0, 250.0, 400.0, 340.0))], ts_s=30.0, now_wall=20.0)
    expired = ledger.process([], ts_s=40.0, now_wall=3700.0)
    assert sorted((e.event_id, reason) for e, reason in expired) == [("b", "expired"), ("c", "expired")]
    assert ledger.close("camera_removed") == []  # nothing open any more
    ledger.process([ev("d")], ts_s=50.0, now_wall=3800.0)
    closed = ledger.close("stream_ended")
    assert [(e.event_id, e.phase, e.ended_ts, r) for e, r in closed] == [("d", "ended", 50.0, "stream_ended")]


def test_carried_episode_continues_or_ends_unmatched(tmp_path):
    store = EventStore.open(tmp_path)
    store.record(ev("parked"))  # open when the hub stopped
    store.record(ev("gone", box=(300.0, 250.0, 400.0, 340.0)))
    ledger = EpisodeLedger("cam1", RULES, store)
    assert ledger.process([], ts_s=0.0) == []  # video time starts again at 0
    # the rule fires again for the still-parked car, under a new id: nothing is emitted
    assert ledger.process([ev("new-id", box=(104.0, 252.0, 203.0, 341.0), ts=5.0)], ts_s=5.0) == []
    out = ledger.process([], ts_s=16.0)  # past the rule's dwell + grace + slack: "gone" never came back
    assert [(e.event_id, r) for e, r in out] == [("gone", "restart_unmatched")]
    ended = ledger.process([ev("new-id", "ended", ts=30.0)], ts_s=30.0)
    assert [(e.event_id, e.started_ts, r) for e, r in ended] == [("parked", 6.0, "left")]  # the original episode


def run_until(runner, store, camera_id: str, predicate, timeout_s: float = 120.0) -> None:
    hit = threading.Event()
    runner.sink.listeners.append(lambda stored: predicate(stored) and hit.set())
    assert hit.wait(timeout_s), runner.stats(camera_id)


def test_a_car_parked_across_a_restart_is_one_event(detector, synth, tmp_path):  # noqa: F811
    video, truth = synth
    store = EventStore.open(tmp_path)
    batcher = DynamicBatcher(detect_fn(detector), BatchPolicy(max_batch_size=8, max_wait_ms=10, max_queue_per_key=2))
    try:
        # first run: played in real time; the hub goes down while the car is parked and its event is open
        runner = StreamRunner(lambda model: batcher, EventSink(store))
        runner.add(camera_spec("synth", str(video), realtime=True).plan())
        run_until(runner, store, "synth", lambda s: s.event.rule == "illegal_parking")
        runner.close()  # a shutdown ends nothing: the episode stays open for the next start
        [before] = [e for e in store.list_events(camera_id="synth") if e.event.rule == "illegal_parking"]
        assert before.event.ended_ts is None

        # after the restart the camera sees the same parked car from the start of the file
        runner = StreamRunner(lambda model: batcher, EventSink(store))
        runner.add(camera_spec("synth", str(video), realtime=False).plan())
        assert runner.wait_done("synth", timeout_s=240)
        runner.close()
    finally:
        batcher.close()
    events = store.list_events(camera_id="synth")
    parking = [e for e in events if e.event.rule == "illegal_parking"]
    assert [e.event.event_id for e in parking] == [before.event.event_id]  # exactly one, the same
    assert parking[0].end_reason == "left" and parking[0].event.ended_ts == pytest.approx(truth.car_s[1], abs=1.0)
    phases = [(e.event.event_id, e.event.phase) for e in store.feed(0, limit=1000) if e.event.rule == "illegal_parking"]
    assert phases == [(before.event.event_id, "started"), (before.event.event_id, "ended")]
    spill = [e for e in events if e.event.rule == "spill"]
    assert len(spill) == 1 and spill[0].end_reason == "stream_ended"  # the file ends before the debris goes
    assert store.open_events("synth") == []


def test_removing_a_camera_ends_its_open_episodes(detector, synth, tmp_path):  # noqa: F811
    video, _ = synth
    store = EventStore.open(tmp_path)
    batcher = DynamicBatcher(detect_fn(detector), BatchPolicy(max_batch_size=8, max_wait_ms=10, max_queue_per_key=2))
    runner = StreamRunner(lambda model: batcher, EventSink(store))
    try:
        runner.add(camera_spec("synth", str(video), realtime=True).plan())
        run_until(runner, store, "synth", lambda s: s.event.rule == "illegal_parking")
        runner.remove("synth")
    finally:
        runner.close()
        batcher.close()
    parking = [e for e in store.list_events(camera_id="synth") if e.event.rule == "illegal_parking"]
    assert len(parking) == 1 and parking[0].end_reason == "camera_removed"
    assert store.open_events("synth") == []
