"""A stream shard's outbox (pipelines/outbox.py): events stay until the manager acknowledges them,
a repeated drain gives the same events again, the bound drops the oldest, and a camera's carried
open episodes are handed to its ledger once."""

from __future__ import annotations

import threading

import pytest

from pipelines.events import StoredEvent
from pipelines.outbox import Outbox
from pipelines.rules.base import Event


def _event(n: int, phase: str = "started") -> Event:
    return Event(event_id=f"e{n}", camera_id="cam", rule="illegal_parking", zone_id="kerb", track_id=n,
                 started_ts=float(n), ended_ts=None if phase == "started" else float(n) + 5, phase=phase,
                 bbox=(0.0, 0.0, 10.0, 10.0), score=0.9, class_name="car", fired_ts=float(n) + 4)


# (events recorded, ack of the first drain, what the first drain gives, what a drain acking 0 gives after)
CASES = [
    ("nothing waiting", 0, 0, [], []),
    ("nothing acknowledged: all, again", 3, 0, [1, 2, 3], [1, 2, 3]),
    ("two acknowledged: the third", 3, 2, [3], [3]),
    ("all acknowledged", 3, 3, [], []),
]


@pytest.mark.parametrize(("what", "recorded", "ack", "first", "again"), CASES, ids=[c[0] for c in CASES])
def test_drain_forgets_only_what_was_acknowledged(what, recorded, ack, first, again):
    box = Outbox()
    for n in range(1, recorded + 1):
        stored = box.record(_event(n), webhooks=["https://x/hook"], snapshot_jpeg=b"\xff\xd8")
        assert stored.seq == 0  # not stored yet: the shard's listeners are not told
    assert [i.seq for i in box.drain(ack, wait_s=0.0)] == first
    assert [i.seq for i in box.drain(0, wait_s=0.0)] == again  # an old ack never brings dropped items back


def test_the_items_carry_what_the_store_needs():
    box = Outbox()
    box.record(_event(1, "ended"), webhooks=("https://x/hook",), end_reason="left", frame_jpeg=b"f")
    [item] = box.drain(0, wait_s=0.0)
    assert (item.event.event_id, item.event.phase, item.end_reason, item.webhooks, item.frame_jpeg) == (
        "e1", "ended", "left", ("https://x/hook",), b"f")


def test_past_the_bound_the_oldest_is_dropped_and_counted():
    box = Outbox(max_items=2)
    for n in (1, 2, 3):
        box.record(_event(n))
    assert ([i.seq for i in box.drain(0, wait_s=0.0)], box.lost) == ([2, 3], 1)


def test_a_waiting_drain_returns_when_an_event_arrives():
    box = Outbox()
    got: list = []
    waiter = threading.Thread(target=lambda: got.extend(box.drain(0, wait_s=30.0)))
    waiter.start()
    box.record(_event(1))
    waiter.join(30.0)
    assert [i.seq for i in got] == [1]


def test_carried_episodes_are_handed_over_once():
    box = Outbox()
    carried = [StoredEvent(_event(7), None, 1.0, 1.0)]
    box.carry("cam", carried)
    assert (box.open_events("cam"), box.open_events("cam"), box.open_events("other")) == (carried, [], [])
