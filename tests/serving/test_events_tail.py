"""`hub events tail` reconnects by itself and resumes with `Last-Event-ID` (cli/commands/streams.py).

The hub side is a scripted HTTP transport: the first connection delivers one event and a heartbeat
id and then breaks, as a restarting hub or a proxy would; the second must ask for what follows.
"""

from __future__ import annotations

import json

import httpx
import pytest

from cli.commands import streams


class BrokenAfter(httpx.SyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self):
        yield from self.chunks
        raise httpx.ReadError("connection reset by peer")


def _event(seq: int) -> bytes:
    body = {"seq": seq, "event_id": f"e{seq}", "phase": "started"}
    return f"id: {seq}\nevent: started\ndata: {json.dumps(body)}\n\n".encode()


@pytest.mark.parametrize(("after_seq", "first_header"), [(None, None), (3, "3")])
def test_tail_reconnects_and_resumes_from_the_last_id(monkeypatch, after_seq, first_header):
    seen_headers: list[str | None] = []

    def hub(request: httpx.Request) -> httpx.Response:
        seen_headers.append(request.headers.get("last-event-id"))
        if len(seen_headers) == 1:  # one event, then a heartbeat that moves the cursor, then a break
            return httpx.Response(200, stream=BrokenAfter([b"retry: 2000\n: connected\n\n", _event(7),
                                                           b": keep-alive\nid: 9\n\n"]))
        return httpx.Response(200, stream=httpx.ByteStream(_event(10)))

    monkeypatch.setattr(streams, "_client", lambda url, key, timeout_s=None: httpx.Client(
        base_url=url, transport=httpx.MockTransport(hub)))
    monkeypatch.setattr("time.sleep", lambda s: None)
    printed: list[str] = []
    monkeypatch.setattr(streams.typer, "echo", lambda text, **kw: printed.append(text))
    streams.tail(camera=None, rule=None, after_seq=after_seq, max_events=2, max_backoff_s=1.0,
                 url="http://hub", api_key=None)
    assert seen_headers == [first_header, "9"]
    events = [json.loads(p) for p in printed if p.startswith("{")]
    assert [e["seq"] for e in events] == [7, 10]
    assert any("reconnecting" in p for p in printed)


def test_tail_does_not_retry_a_refusal(monkeypatch):
    calls = []

    def hub(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "bad key"}})

    monkeypatch.setattr(streams, "_client", lambda url, key, timeout_s=None: httpx.Client(
        base_url=url, transport=httpx.MockTransport(hub)))
    monkeypatch.setattr(streams.typer, "echo", lambda text, **kw: None)
    with pytest.raises(streams.typer.Exit):
        streams.tail(camera=None, rule=None, after_seq=None, max_events=0, max_backoff_s=1.0,
                     url="http://hub", api_key=None)
    assert len(calls) == 1
