"""Signed webhooks: a real HTTP receiver on 127.0.0.1 that verifies `X-Hub-Signature-256` and
`X-Hub-Timestamp` exactly as the README tells a receiver to (stdlib `hmac`, not the hub's code),
accepts only what verifies, and refuses replays and forgeries."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from hub.outbound import OutboundPolicy
from pipelines.events import EventStore, verify_webhook
from pipelines.rules.base import Event
from pipelines.webhooks import WebhookPolicy, WebhookSender

LOCAL = OutboundPolicy(allow=("127.0.0.1/32",), webhook_http=True)
TOLERANCE_S = 300


def receiver_verifies(secret: str, body: bytes, signature: str, timestamp: str) -> bool:
    """The README's verification snippet."""
    if abs(time.time() - int(timestamp)) > TOLERANCE_S:
        return False  # too old (or from the future): a replay
    expected = "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


class VerifyingReceiver:
    """Answers 204 to a request whose signature verifies with `secret`, 401 otherwise."""

    def __init__(self, secret: str) -> None:
        self.accepted: list[dict] = []
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = receiver_verifies(secret, body, self.headers.get("X-Hub-Signature-256", ""),
                                       self.headers.get("X-Hub-Timestamp", "0"))
                if ok:
                    receiver.accepted.append(json.loads(body))
                else:
                    receiver.refused += 1
                self.send_response(204 if ok else 401)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def event(event_id: str) -> Event:
    return Event(event_id=event_id, camera_id="cam17", rule="illegal_parking", zone_id="kerb", track_id=4,
                 started_ts=12.0, ended_ts=None, bbox=(40.0, 30.0, 120.0, 90.0), score=0.8, class_name="car",
                 phase="started", fired_ts=192.0)


CASES = [
    # (case, the receiver's secret, the sender's per-receiver secret, default secret, accepted)
    ("own secret", "receiver-own-secret-0123", "receiver-own-secret-0123", "hub-default-secret-xyz", True),
    ("hub default secret", "hub-default-secret-xyz", None, "hub-default-secret-xyz", True),
    ("wrong secret", "receiver-own-secret-0123", "somebody-else-secret-99", "hub-default-secret-xyz", False),
]


@pytest.mark.parametrize("case,receiver_secret,own,default,accepted", CASES, ids=[c[0] for c in CASES])
def test_receiver_verifies_signed_deliveries(tmp_path, case, receiver_secret, own, default, accepted):
    receiver = VerifyingReceiver(receiver_secret)
    store = EventStore.open(tmp_path)
    sender = WebhookSender(store, WebhookPolicy(max_attempts=1), outbound=LOCAL, default_secret=default)
    sender.set_secret(receiver.url, own)
    try:
        store.record(event("e1"), webhooks=[receiver.url])
        with httpx.Client(timeout=5) as client:
            delivered = sender.deliver_due(client)
        assert delivered == int(accepted)
        assert [e["event_id"] for e in receiver.accepted] == (["e1"] if accepted else [])
        assert receiver.refused == int(not accepted)
    finally:
        receiver.close()
        store.close()


def test_replayed_or_tampered_delivery_is_refused(tmp_path):
    """A captured delivery sent again later, or with its body changed, does not verify."""
    secret, seen = "receiver-own-secret-0123", []

    class Capture(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append((self.rfile.read(int(self.headers["Content-Length"])), dict(self.headers)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    store = EventStore.open(tmp_path)
    sender = WebhookSender(store, WebhookPolicy(max_attempts=1), outbound=LOCAL, default_secret=secret)
    try:
        store.record(event("e2"), webhooks=[url])
        with httpx.Client(timeout=5) as client:
            assert sender.deliver_due(client) == 1
    finally:
        server.shutdown()
        server.server_close()
        store.close()
    body, headers = seen[0]
    signature, timestamp = headers["X-Hub-Signature-256"], headers["X-Hub-Timestamp"]
    assert receiver_verifies(secret, body, signature, timestamp)
    assert verify_webhook(secret, body, signature, timestamp)  # the hub's own helper agrees
    tampered = body.replace(b'"cam17"', b'"cam99"')
    assert not receiver_verifies(secret, tampered, signature, timestamp)
    later = time.time() + TOLERANCE_S + 60  # the same request replayed six minutes later
    assert not verify_webhook(secret, body, signature, timestamp, now_s=later)
    forged_ts = str(int(timestamp) + 600)  # a fresh timestamp does not carry the old signature
    assert not verify_webhook(secret, body, signature, forged_ts, now_s=int(forged_ts))


def test_sender_refuses_a_receiver_the_policy_forbids(tmp_path):
    """Checked at each attempt: a loopback receiver under the default policy is dead-lettered at once."""
    receiver = VerifyingReceiver("receiver-own-secret-0123")
    store = EventStore.open(tmp_path)
    sender = WebhookSender(store, WebhookPolicy(max_attempts=5), default_secret="receiver-own-secret-0123")
    try:
        store.record(event("e3"), webhooks=[receiver.url])
        with httpx.Client(timeout=5) as client:
            assert sender.deliver_due(client) == 0
        assert receiver.accepted == [] and receiver.refused == 0
        dead = sender.queue.dead_letters()
        assert len(dead) == 1 and "scheme http://" in dead[0]["last_error"]
    finally:
        receiver.close()
        store.close()
