"""The ingress's limits in-process (FastAPI TestClient, capability handles answered by coroutines):
deep JSON is a 400 before any capability sees it, a refusal carries Retry-After, a client deadline
becomes a 504, and /v1/models reports the admission counters."""

from __future__ import annotations

import asyncio

import pytest

from hub.errors import Overloaded
from serving.admission import AdmissionBoard
from serving.config import ServingConfig


class CoroutineHandle:
    """Stands in for a Ray handle: `.predict_json.remote(...)` returns an awaitable."""

    class _Method:
        def __init__(self, fn) -> None:
            self.fn = fn

        def remote(self, *args):
            return asyncio.ensure_future(self.fn(*args))

    def __init__(self, delay_s: float = 0.0, error: Exception | None = None) -> None:
        self.calls: list = []

        async def predict_json(payload, as_file=False, timeout_s=None):
            self.calls.append((payload, timeout_s))
            await asyncio.sleep(delay_s)
            if error is not None:
                raise error
            return {"echo": payload if isinstance(payload, dict) else "bytes", "timeout_s": timeout_s}

        async def status():
            return {"capability": "reason", "ready": True}

        self.predict_json = self._Method(predict_json)
        self.status = self._Method(status)


@pytest.fixture
def ingress():
    from fastapi.testclient import TestClient

    from serving import ingress as module
    from serving.handles import set_handles

    config = ServingConfig.model_validate({"capabilities": {
        "reason": {"model": "models:/hotline-classifier@champion", "timeout_s": 30, "latency_budget_s": 5,
                   "max_ongoing_requests": 2, "batch": {"max_batch_size": 1, "workers": 1}}}})
    saved = dict(module._STATE)
    module._STATE.update(config=config, capabilities=["reason"], keys=None, admission=AdmissionBoard.from_config(config))
    handles = {"reason": CoroutineHandle()}
    set_handles(handles)
    yield TestClient(module.app, base_url="http://127.0.0.1", raise_server_exceptions=False), handles, module
    module._STATE.clear()
    module._STATE.update(saved)
    set_handles({})


@pytest.mark.parametrize(("body", "status"), [
    (b'{"text": "ok"}', 200),
    (b'{"text": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", 400),
    (b"[" * 33 + b"]" * 33, 400),
    (b"", 400),
])
def test_json_bodies_at_the_ingress(ingress, body, status):
    client, handles, _ = ingress
    reply = client.post("/v1/reason", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == status, reply.text
    assert len(handles["reason"].calls) == (1 if status == 200 else 0)


def test_a_refusal_downstream_carries_retry_after(ingress):
    client, handles, _ = ingress
    from serving.handles import set_handles

    set_handles({"reason": CoroutineHandle(error=Overloaded("queue full", retry_after_s=2.5))})
    reply = client.post("/v1/reason", json={"text": "hi"})
    assert reply.status_code == 503 and reply.headers["retry-after"] == "3"


def test_a_client_deadline_is_passed_on_and_enforced(ingress):
    client, _, _ = ingress
    from serving.handles import set_handles

    slow = CoroutineHandle(delay_s=5.0)
    set_handles({"reason": slow})
    reply = client.post("/v1/reason", json={"text": "hi"}, headers={"x-timeout-s": "0.05"})
    assert reply.status_code == 504 and reply.json()["error"]["code"] == "inference_timeout"
    assert slow.calls[0][1] == 0.05  # the replica got the same deadline, so it can drop the work
    models = client.get("/v1/models").json()["admission"]["reason"]
    assert (models["in_flight"], models["timed_out"], models["admitted"]) == (0, 1, 1)


def test_the_hard_in_flight_limit_refuses_before_reading_the_body(ingress):
    client, _, module = ingress
    gate = module._STATE["admission"].gates["reason"]
    gate.in_flight = gate.max_in_flight  # as if two requests were in flight
    try:
        reply = client.post("/v1/reason", json={"text": "hi"})
    finally:
        gate.in_flight = 0
    assert reply.status_code == 503 and int(reply.headers["retry-after"]) >= 1
    assert "in flight" in reply.json()["error"]["message"]
