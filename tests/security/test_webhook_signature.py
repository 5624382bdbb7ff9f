"""Signed webhooks: a real HTTP receiver on 127.0.0.1 that verifies `X-Hub-Signature-256` and
`X-Hub-Timestamp` exactly as the README tells a receiver to (stdlib `hmac`, not the hub's code),
accepts only what verifies, and refuses replays and forgeries."""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx
import pytest

from hub.outbound import OutboundPolicy
from pipelines.events import EventStore, verify_webhook
from pipelines.rules.base import Event
from pipelines.webhooks import WebhookPolicy, WebhookSender
from tests.webhook_receiver import WebhookReceiver

LOCAL = OutboundPolicy(allow=("127.0.0.1/32",), webhook_http=True)
TOLERANCE_S = 300


def receiver_verifies(secret: str, body: bytes, signature: str, timestamp: str) -> bool:
    """The README's verification snippet."""
    if abs(time.time() - int(timestamp)) > TOLERANCE_S:
        return False  # too old (or from the future): a replay
    expected = "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def verifying_receiver(secret: str) -> WebhookReceiver:
    """Answers 204 to a request whose signature verifies with `secret`, 401 otherwise."""
    return WebhookReceiver(lambda posted: 204 if receiver_verifies(
        secret, posted.body, posted.headers.get("X-Hub-Signature-256", ""), posted.headers.get("X-Hub-Timestamp", "0"))
        else 401)


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
    receiver = verifying_receiver(receiver_secret)
    store = EventStore.open(tmp_path)
    sender = WebhookSender(store, WebhookPolicy(max_attempts=1), outbound=LOCAL, default_secret=default)
    sender.set_secret(receiver.url, own)
    try:
        store.record(event("e1"), webhooks=[receiver.url])
        with httpx.Client(timeout=5) as client:
            delivered = sender.deliver_due(client)
        assert delivered == int(accepted)
        assert [e["event_id"] for e in receiver.received] == (["e1"] if accepted else [])
        assert receiver.attempts - len(receiver.received) == int(not accepted)  # refused with 401
    finally:
        receiver.close()
        store.close()


def test_replayed_or_tampered_delivery_is_refused(tmp_path):
    """A captured delivery sent again later, or with its body changed, does not verify."""
    secret = "receiver-own-secret-0123"
    receiver = WebhookReceiver(lambda posted: 204)
    store = EventStore.open(tmp_path)
    sender = WebhookSender(store, WebhookPolicy(max_attempts=1), outbound=LOCAL, default_secret=secret)
    try:
        store.record(event("e2"), webhooks=[receiver.url])
        with httpx.Client(timeout=5) as client:
            assert sender.deliver_due(client) == 1
    finally:
        receiver.close()
        store.close()
    body, headers = receiver.requests[0].body, receiver.requests[0].headers
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
    receiver = verifying_receiver("receiver-own-secret-0123")
    store = EventStore.open(tmp_path)
    sender = WebhookSender(store, WebhookPolicy(max_attempts=5), default_secret="receiver-own-secret-0123")
    try:
        store.record(event("e3"), webhooks=[receiver.url])
        with httpx.Client(timeout=5) as client:
            assert sender.deliver_due(client) == 0
        assert receiver.received == [] and receiver.attempts == 0
        dead = sender.queue.dead_letters()
        assert len(dead) == 1 and "scheme http://" in dead[0]["last_error"]
    finally:
        receiver.close()
        store.close()
