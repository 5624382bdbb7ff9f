"""The event store and webhooks: written before delivery, durable across a restart, retried from
the store with back-off against a real local HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from PIL import Image

from hub.errors import NotFound
from hub.outbound import OutboundPolicy
from pipelines.events import EventStore
from pipelines.rules.base import Event
from pipelines.webhooks import WebhookPolicy, WebhookSender
from tests.waiting import wait_for

# The receivers of these tests listen on loopback over plain http: admit exactly that.
LOCAL = OutboundPolicy(allow=("127.0.0.1/32",), webhook_http=True)


def event(event_id: str, phase: str = "started", camera: str = "cam17", rule: str = "illegal_parking",
          ended: float | None = None) -> Event:
    return Event(event_id=event_id, camera_id=camera, rule=rule, zone_id="kerb", track_id=4, started_ts=12.0,
                 ended_ts=ended, bbox=(40.0, 30.0, 120.0, 90.0), score=0.8, class_name="car", phase=phase,
                 fired_ts=192.0)


def frame() -> np.ndarray:
    img = np.full((180, 320, 3), 90, np.uint8)
    img[30:90, 40:120] = (200, 30, 30)
    return img


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers `fail_first` requests with 500, then 204."""

    def __init__(self, fail_first: int = 0, port: int = 0) -> None:
        self.fail_first = fail_first
        self.received: list[dict] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(500)
                else:
                    receiver.received.append(body)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

def test_events_and_snapshots_survive_a_restart(tmp_path):
    store = EventStore.open(tmp_path)
    store.record(event("e1"), frame())
    store.record(event("e2", camera="cam3", rule="spill"), frame())
    store.record(event("e1", phase="ended", ended=300.0))
    store.close()

    store = EventStore.open(tmp_path)  # a new process would do exactly this
    e1 = store.get("e1")
    assert e1.event.ended_ts == 300.0 and e1.event.started_ts == 12.0 and e1.event.bbox == (40.0, 30.0, 120.0, 90.0)
    jpeg = store.snapshot_bytes("e1")
    img = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    assert img.shape == (180, 320, 3)
    assert img[30, 80, 0] > 200 and img[30, 80, 1] < 80  # the red box outline is drawn on the frame
    assert [(e.event.event_id, e.event.phase) for e in store.feed(0)] == [("e1", "started"), ("e2", "started"),
                                                                        ("e1", "ended")]
    assert store.last_seq() == 3
    store.close()


@pytest.mark.parametrize(
    "camera,rule,n",
    [(None, None, 3), ("cam17", None, 2), (None, "spill", 1), ("cam17", "spill", 0), ("nope", None, 0)],
)
def test_list_events_filters(tmp_path, camera, rule, n):
    store = EventStore.open(tmp_path)
    store.record(event("a"), frame())
    store.record(event("b"), frame())
    store.record(event("c", camera="cam3", rule="spill"), frame())
    assert len(store.list_events(camera_id=camera, rule=rule)) == n
    assert len(store.list_events(since_wall_s=time.time() + 60)) == 0
    store.close()


def test_unknown_event_and_missing_snapshot_are_not_found(tmp_path):
    store = EventStore.open(tmp_path)
    store.record(event("nosnap"))  # an event recorded without a frame
    with pytest.raises(NotFound):
        store.get("nope")
    with pytest.raises(NotFound):
        store.snapshot_bytes("nosnap")
    store.close()


def test_webhook_retried_with_backoff_until_delivered(tmp_path):
    receiver = Receiver(fail_first=2)
    store = EventStore.open(tmp_path)
    sender = WebhookSender(store, WebhookPolicy(backoff_initial_s=0.1, backoff_max_s=0.2, poll_s=0.05), outbound=LOCAL).start()
    try:
        store.record(event("e1"), frame(), webhooks=[receiver.url])
        sender.wake()
        wait_for(lambda: store.delivery_counts()["delivered"] == 1)
        assert receiver.attempts == 3
        assert [(b["event_id"], b["phase"], b["camera_id"]) for b in receiver.received] == [("e1", "started", "cam17")]
    finally:
        sender.stop()
        store.close()
        receiver.close()


def test_webhook_pending_when_down_is_delivered_after_restart(tmp_path):
    """The receiver is down while events happen and the hub restarts; nothing is lost."""
    receiver = Receiver()
    url = receiver.url
    receiver.close()  # the receiver is down

    store = EventStore.open(tmp_path)
    sender = WebhookSender(store, WebhookPolicy(backoff_initial_s=0.05, backoff_max_s=0.1, poll_s=0.05), outbound=LOCAL).start()
    store.record(event("e1"), frame(), webhooks=[url])
    store.record(event("e1", phase="ended", ended=300.0), webhooks=[url])
    wait_for(lambda: receiver.attempts == 0 and _attempts(store) >= 2)  # tried, failed, still pending
    assert store.delivery_counts() == {"pending": 2, "delivered": 0, "failed": 0}
    sender.stop()
    store.close()  # the hub goes down

    receiver = Receiver(port=int(url.split(":")[2].split("/")[0]))  # the receiver comes back
    store = EventStore.open(tmp_path)  # the hub comes back
    sender = WebhookSender(store, WebhookPolicy(backoff_initial_s=0.05, backoff_max_s=0.1, poll_s=0.05), outbound=LOCAL).start()
    try:
        wait_for(lambda: store.delivery_counts()["delivered"] == 2)
        assert [(b["event_id"], b["phase"], b["ended_ts"]) for b in receiver.received] == [
            ("e1", "started", None), ("e1", "ended", 300.0)]
    finally:
        sender.stop()
        store.close()
        receiver.close()


def _attempts(store: EventStore) -> int:
    with store._lock:
        return int(store._db.execute("SELECT COALESCE(SUM(attempts), 0) FROM deliveries").fetchone()[0])


def test_webhook_gives_up_after_max_attempts(tmp_path):
    receiver = Receiver(fail_first=100)
    store = EventStore.open(tmp_path)
    sender = WebhookSender(store, WebhookPolicy(max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.01), outbound=LOCAL)
    store.record(event("e1"), webhooks=[receiver.url])
    with httpx.Client(timeout=2.0) as client:
        for _ in range(10):
            sender.deliver_due(client, now_wall=time.time() + 1.0)
    assert store.delivery_counts() == {"pending": 0, "delivered": 0, "failed": 1}
    assert receiver.attempts == 3
    store.close()
    receiver.close()
