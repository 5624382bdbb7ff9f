"""The HTTP path under load, through the running hub (`hub_server` of tests/serving/conftest.py):
overload is refused with 503 + Retry-After and the hub is healthy afterwards; a request past its
deadline gets 504 and frees its slot; deeply nested JSON is a 400; a Server-Sent Events connection
outlives the hub's `request_timeout_s` and a new one resumes with `Last-Event-ID`.

Nothing here asserts a duration: the deadline test asks for a 1 ms deadline, which no round trip
through Ray can meet, and the SSE test waits past the configured timeout before it checks.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import httpx
import pytest

from hub.settings import get_settings
from tests.serving.conftest import REQUEST_TIMEOUT_S

pytestmark = pytest.mark.serve


def _bus(shared_dir) -> bytes:
    return (shared_dir / "data" / "images" / "bus.jpg").read_bytes()


def _admission(client, capability: str) -> dict:
    return client.get("/v1/models").json()["admission"][capability]


def _until(predicate, limit_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what} never held"
        time.sleep(0.2)


def _refusals_timed(client, capability: str) -> float:
    """503s the ingress has timed in `hub_refusal_ms` (its histogram's count) so far."""
    text = client.get("/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("ray_hub_refusal_ms_count{") and f'capability="{capability}"' in line)


async def _burst(hub, body: bytes, count: int) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {hub.key}", "content-type": "image/jpeg"}
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=hub.url, headers=headers, limits=limits, timeout=300) as client:
        return await asyncio.gather(*(client.post("/v1/see", content=body) for _ in range(count)))


def test_overload_is_refused_with_retry_after_and_the_hub_recovers(hub_server, shared_dir):
    body = _bus(shared_dir)
    with hub_server.client() as c:
        limit = c.get("/v1/models").json()["admission"]["see"]
        timed = _refusals_timed(c, "see")
    replies = asyncio.run(_burst(hub_server, body, 3 * 64))  # three times the capability's slots
    statuses = sorted({r.status_code for r in replies})
    assert statuses == [200, 503], statuses
    refused = [r for r in replies if r.status_code == 503]
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    # refused by the ingress's admission (the hub's error shape), or by Ray's proxy before the
    # ingress (serving.admission.ingress_limits: a burst beyond its queue), which answers in text
    by_proxy = [r for r in refused if r.headers.get("content-type", "").startswith("text/")]
    assert all("backpressure" in r.text for r in by_proxy)
    by_hub = [r for r in refused if r not in by_proxy]
    assert by_hub and {r.json()["error"]["code"] for r in by_hub} == {"overloaded"}
    with hub_server.client() as c:
        _until(lambda: _admission(c, "see")["in_flight"] == 0, what="the burst draining")
        after = _admission(c, "see")
        assert after["refused"] - limit["refused"] == len(by_hub)
        # every refusal of the ingress is timed, arrival to answer sent (Ray exports it within seconds)
        _until(lambda: _refusals_timed(c, "see") - timed == len(by_hub), what="every refusal in hub_refusal_ms")
        reply = c.post("/v1/see", content=body, headers={"content-type": "image/jpeg"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["model"]["name"]


def test_a_request_past_its_deadline_gets_504_and_frees_its_slot(hub_server, shared_dir):
    body = _bus(shared_dir)
    with hub_server.client() as c:
        before = _admission(c, "see")
        for _ in range(8):
            reply = c.post("/v1/see", content=body, headers={"content-type": "image/jpeg", "x-timeout-s": "0.001"})
            assert reply.status_code == 504, reply.text
            assert reply.json()["error"]["code"] == "inference_timeout"
        _until(lambda: _admission(c, "see")["in_flight"] == 0, what="the timed-out requests leaving")
        after = _admission(c, "see")
        assert after["timed_out"] - before["timed_out"] == 8
        _until(lambda: next(s for s in c.get("/v1/models").json()["capabilities"]
                            if s["capability"] == "see")["batching"]["queued"] == 0, what="the replica queue emptying")
        reply = c.post("/v1/see", content=body, headers={"content-type": "image/jpeg"})
        assert reply.status_code == 200, reply.text


def _deep(depth: int) -> bytes:
    return b'{"text": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/reason", _deep(10_000)),
    ("/v1/reason", _deep(100)),
    ("/v1/see", b"[" * 10_000 + b"]" * 10_000),
    ("/v1/streams", b'{"camera_id": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"),
])
def test_deeply_nested_json_is_a_400(hub_server, path, body):
    with hub_server.client() as c:
        reply = c.post(path, content=body, headers={"content-type": "application/json"})
        if path == "/v1/streams" and reply.status_code == 404:
            pytest.skip("the session hub does not serve streams")
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == "invalid_input"
    assert "nested deeper" in reply.json()["error"]["message"]


def _event(camera_id: str):
    from pipelines.rules.base import Event

    return Event(uuid.uuid4().hex, camera_id, "illegal_parking", "kerb", 1, time.time(), None,
                 (10.0, 20.0, 90.0, 80.0), 0.9, "car")


class SseReader:
    """Reads one SSE connection in a thread; keeps every event and whether the stream is open."""

    def __init__(self, hub, camera_id: str, *, after_seq: int | None = None, last_event_id: int | None = None) -> None:
        from cli.commands.streams import iter_sse

        self.events: list[dict] = []
        self.open = threading.Event()
        self.closed = threading.Event()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
        params = {"camera_id": camera_id, **({"after_seq": after_seq} if after_seq is not None else {})}

        def run() -> None:
            try:
                with hub.client(timeout_s=None) as c, c.stream(
                        "GET", "/v1/events/stream", params=params, headers=headers) as resp:
                    assert resp.status_code == 200
                    self.open.set()
                    for event in iter_sse(resp.iter_lines()):
                        self.events.append(event)
                        if self._stop.is_set():
                            return
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.error = exc
            finally:
                self.closed.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()


def test_an_sse_connection_outlives_the_request_timeout_and_resumes_with_last_event_id(hub_server):
    from pipelines.events import EventStore

    with hub_server.client() as c:
        if c.get("/v1/streams").status_code != 200:
            pytest.skip("the session hub does not serve streams")
    camera_id = f"sse-{uuid.uuid4().hex[:8]}"
    store = EventStore.open(get_settings().data_dir)  # the hub's own store (same HUB_HOME)
    # from the current end of the feed, so an event written right after connecting is not missed
    reader = SseReader(hub_server, camera_id, after_seq=store.last_seq())
    assert reader.open.wait(30)
    opened = time.monotonic()
    first = store.record(_event(camera_id))
    _until(lambda: len(reader.events) == 1, what="the first event arriving")
    # wait past the hub's request timeout: Ray's proxy would have cut the stream by now
    time.sleep(max(0.0, REQUEST_TIMEOUT_S + 2 - (time.monotonic() - opened)))
    assert not reader.closed.is_set(), reader.error
    second = store.record(_event(camera_id))
    _until(lambda: len(reader.events) == 2, what="an event on the old connection")
    assert [e["event_id"] for e in reader.events] == [first.event.event_id, second.event.event_id]
    reader.stop()
    store.record(_event(camera_id))  # triggers the reader's exit (it checks after each event)
    assert reader.closed.wait(30)

    missed = store.record(_event(camera_id))  # while nobody listens
    resumed = SseReader(hub_server, camera_id, last_event_id=second.seq)
    _until(lambda: len(resumed.events) >= 2, what="the resumed feed")
    resumed.stop()
    ids = [e["event_id"] for e in resumed.events]
    assert second.event.event_id not in ids  # nothing at or before Last-Event-ID is repeated
    assert missed.event.event_id in ids
    store.close()
