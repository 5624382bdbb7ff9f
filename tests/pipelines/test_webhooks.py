"""Webhooks per receiver against three real local receivers: a slow one, one that answers 410 Gone
and a flaky one. The slow one must not hold up the others, 410 is final (dead letter, replayable),
and the flaky one gets every event exactly once per phase, in order."""

from __future__ import annotations

import threading

import httpx
import pytest

from hub.outbound import OutboundPolicy
from pipelines.events import EventStore
from pipelines.rules.base import Event
from pipelines.webhooks import DeliveryQueue, WebhookPolicy, WebhookSender, classify
from tests.waiting import wait_for
from tests.webhook_receiver import WebhookReceiver

LOCAL = OutboundPolicy(allow=("127.0.0.1/32",), webhook_http=True)
FAST = WebhookPolicy(timeout_s=30.0, backoff_initial_s=0.02, backoff_max_s=0.1, poll_s=0.02, max_attempts=50)


def event(i: int, phase: str) -> Event:
    return Event(event_id=f"e{i}", camera_id="cam17", rule="illegal_parking", zone_id="kerb", track_id=i,
                 started_ts=10.0 * i, ended_ts=None if phase == "started" else 10.0 * i + 5, bbox=(1.0, 2.0, 30.0, 40.0),
                 score=0.9, class_name="car", phase=phase, fired_ts=10.0 * i + 1)


def Receiver(answer, hold: threading.Event | None = None) -> WebhookReceiver:
    """Keeps (event_id, phase) of each delivered event; `answer(n)` is the n-th request's status."""
    return WebhookReceiver(lambda posted: answer(posted.n), keep=lambda body: (body["event_id"], body["phase"]),
                           hold=hold)

def flaky_answer(n: int) -> int:
    return (503, 429, 204, 500, 204, 204)[n % 6]  # 5xx and 429 mixed into successes


@pytest.mark.parametrize("status,delivered,final", [
    (200, True, False), (204, True, False), (301, False, True), (400, False, True), (404, False, True),
    (408, False, False), (410, False, True), (422, False, True), (429, False, False), (500, False, False),
    (503, False, False),
])
def test_http_answers_are_classified(status, delivered, final):
    outcome = classify(status)
    assert (outcome.delivered, outcome.final) == (delivered, final)


@pytest.mark.parametrize("value,seconds", [("7", 7.0), ("0", 0.0), (None, None), ("soon", None)])
def test_retry_after_is_honoured(value, seconds):
    assert classify(429, value).retry_after_s == seconds


def test_slow_gone_and_flaky_receivers_each_get_their_own_queue(tmp_path):
    release_slow = threading.Event()
    slow = Receiver(lambda n: 204, hold=release_slow)
    gone = Receiver(lambda n: 410)
    flaky = Receiver(flaky_answer)
    store = EventStore.open(tmp_path)
    sender = WebhookSender(store, FAST, outbound=LOCAL).start()
    urls = [slow.url, gone.url, flaky.url]
    expected = []
    try:
        for i in range(4):  # episodes overlap: e0 starts, e1 starts, e0 ends, ...
            store.record(event(i, "started"), webhooks=urls)
            expected.append((f"e{i}", "started"))
            if i:
                store.record(event(i - 1, "ended"), webhooks=urls)
                expected.append((f"e{i - 1}", "ended"))
            sender.wake()
        store.record(event(3, "ended"), webhooks=urls)
        expected.append(("e3", "ended"))
        sender.wake()

        # The slow receiver holds its first request until the others are done: with one shared
        # sender the others would wait behind it and this would never be reached.
        wait_for(lambda: flaky.received == expected and gone.attempts == len(expected))
        assert slow.received == []
        release_slow.set()
        wait_for(lambda: slow.received == expected)

        queue = DeliveryQueue(store)
        dead = queue.dead_letters(url=gone.url)
        assert [(d["event_id"], d["phase"]) for d in dead] == expected  # each tried once, then final
        assert all(d["attempts"] == 1 and "410" in d["last_error"] for d in dead)
        assert gone.attempts == len(expected)  # 410 is not retried
        # a receiver records a body before it answers: the sender marks it a moment later
        wait_for(lambda: store.delivery_counts() == {"pending": 0, "delivered": 2 * len(expected),
                                                     "failed": len(expected)})

        # The receiver is fixed; ops replay its dead letters, which go out in their original order.
        gone.answer = lambda posted: 204
        assert queue.replay(url=gone.url) == len(expected)
        sender.wake()
        wait_for(lambda: gone.received == expected)
        assert queue.dead_letters() == []
        assert flaky.received == expected and slow.received == expected  # nothing sent twice
    finally:
        release_slow.set()
        sender.stop()
        store.close()
        for r in (slow, gone, flaky):
            r.close()


def test_replay_by_id_touches_only_those_deliveries(tmp_path):
    gone = Receiver(lambda n: 404)
    store = EventStore.open(tmp_path)
    sender = WebhookSender(store, FAST, outbound=LOCAL)
    for i in range(3):
        store.record(event(i, "started"), webhooks=[gone.url])
    with httpx.Client(timeout=5.0) as client:
        sender.deliver_due(client)
    queue = DeliveryQueue(store)
    dead = queue.dead_letters()
    assert len(dead) == 3 and gone.attempts == 3
    assert queue.replay(ids=[dead[1]["id"]]) == 1
    assert [d["event_id"] for d in queue.dead_letters()] == ["e0", "e2"]
    assert queue.replay(ids=[]) == 0
    store.close()
    gone.close()


def test_a_phase_is_written_once(tmp_path):
    """A retried write (from the spill) or a second end (a rule's own after `expired`) changes nothing."""
    store = EventStore.open(tmp_path)
    first = store.record(event(0, "started"), webhooks=["http://127.0.0.1:9/x"])
    again = store.record(event(0, "started"), webhooks=["http://127.0.0.1:9/x"])
    ended = store.record(event(0, "ended"), webhooks=["http://127.0.0.1:9/x"], end_reason="expired")
    late = store.record(event(0, "ended"), webhooks=["http://127.0.0.1:9/x"])
    assert (first.seq, again.seq, ended.seq, late.seq) == (1, 0, 2, 0)
    assert store.get("e0").end_reason == "expired"
    assert [(e.event.phase, e.end_reason) for e in store.feed(0)] == [("started", None), ("ended", "expired")]
    assert store.delivery_counts()["pending"] == 2
    with pytest.raises(ValueError):
        store.record(event(1, "ended"), end_reason="vanished")
    store.close()
