"""Review API and pages in-process: the ingress app (FastAPI TestClient) over a real
`StreamManagerCore` (no Ray); the browser test (test_ui_browser.py) runs the same through the hub."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pipelines.rules.base import Event
from serving.auth import KeyRing, digest
from serving.streams import StreamManagerCore

KEY = "ops-key-0123456789"


class _Handle:
    """`handle.method.remote(*args)` of a Ray deployment, over the in-process core."""

    def __init__(self, core) -> None:
        self.core = core

    def __getattr__(self, name: str):
        method = getattr(self.core, name)

        class _Remote:
            @staticmethod
            def remote(*args):
                return asyncio.to_thread(method, *args)

        return _Remote


@pytest.fixture
def client(hub_home, tmp_path):
    from serving import ingress
    from serving.handles import set_handles

    core = StreamManagerCore({"retention": {"hard_quota": False}}, data_dir=tmp_path / "data")
    frame = np.full((90, 160, 3), 120, np.uint8)
    for i in range(2):
        core.store.record(Event(f"ev{i}", "cam1", "spill", "road", i, float(i), None, (10, 10, 40, 40), 0.9, "debris",
                                model=("cars", "2")), frame, now_wall=1000.0 + i)
    saved = dict(ingress._STATE)
    set_handles({"streams": _Handle(core)})
    ingress._STATE["keys"] = KeyRing(required=True, digests=(("ops", digest(KEY)),))
    with TestClient(ingress.app, base_url="http://hub.test") as c:
        yield c
    ingress._STATE.clear()
    ingress._STATE.update(saved)
    core.close()


def _login(client) -> None:
    reply = client.post("/ui/login", data={"api_key": KEY}, follow_redirects=False)
    assert reply.status_code == 303 and "hub_session" in reply.cookies


@pytest.mark.parametrize("path", ["/ui", "/ui/events", "/ui/events/ev0/snapshot.jpg"])
def test_pages_need_a_session(client, path):
    reply = client.get(path, follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"] == "/ui/login"


def test_wrong_key_is_refused(client):
    reply = client.post("/ui/login", data={"api_key": "nope"}, follow_redirects=False)
    assert reply.status_code == 401 and "hub_session" not in reply.cookies


def test_review_in_the_page_persists_through_the_api(client):
    _login(client)
    page = client.get("/ui/events", params={"review": "unreviewed"})
    assert page.status_code == 200 and "ev0" in page.text and "cars v2" in page.text
    assert client.get("/ui/events/ev0/snapshot.jpg").content[:2] == b"\xff\xd8"
    reply = client.post("/ui/events/ev0/review", data={"action": "reject", "note": "a shadow", "back": "review=unreviewed"},
                        headers={"origin": "http://hub.test"}, follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"] == "/ui/events?review=unreviewed#ev0"
    api = client.get("/v1/reviews", params={"review": "rejected"}, headers={"Authorization": f"Bearer {KEY}"}).json()
    assert [(e["event_id"], e["review"]["note"], e["review"]["reviewer"]) for e in api["events"]] == [
        ("ev0", "a shadow", "ops")]
    assert "rejected" in client.get("/ui/events", params={"review": "rejected"}).text


@pytest.mark.parametrize("headers, data, status", [
    ({"origin": "http://evil.example"}, {"action": "reject"}, 403),  # a cross-site form post
    ({"origin": "http://hub.test"}, {"action": "maybe"}, 400),
])
def test_bad_page_reviews_are_refused(client, headers, data, status):
    _login(client)
    assert client.post("/ui/events/ev1/review", data=data, headers=headers, follow_redirects=False).status_code == status


@pytest.mark.parametrize("body, status", [
    ({"action": "confirm", "note": "ok"}, 200),
    ({"action": "approve"}, 400),
    ({"action": "reject", "note": "x" * 1001}, 400),
    ({"action": "reject", "extra": 1}, 400),
])
def test_review_api(client, body, status):
    auth = {"Authorization": f"Bearer {KEY}"}
    reply = client.post("/v1/events/ev1/review", json=body, headers=auth)
    assert reply.status_code == status, reply.text
    if status == 200:
        assert reply.json()["review"]["verdict"] == "confirmed"
        assert client.get("/v1/events/ev1/frame.jpg", headers=auth).content[:2] == b"\xff\xd8"
    assert client.post("/v1/events/missing/review", json={"action": "confirm"}, headers=auth).status_code == 404
    assert client.post("/v1/events/ev1/review", json=body).status_code == 401  # the API needs the key
