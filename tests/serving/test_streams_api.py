"""The streams HTTP API and CLI without Ray: the real ingress app (with `serving/streams_api.py`)
served by uvicorn on 127.0.0.1, the real `StreamManager` class (its Ray decorator peeled off)
behind an in-process stand-in for the deployment handle, the detector resolved from a fresh MLflow
registry. `test_streams_e2e.py` runs the same through a real Ray Serve hub."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import threading
import time

import httpx
import pytest
from PIL import Image

from hub.settings import reset_settings
from tests.pipelines import synth_video
from tests.waiting import restore_env


class _Call:
    """What `handle.method.remote(...)` returns: awaitable once, cancellable."""

    def __init__(self, coro) -> None:
        self._coro = coro

    def __await__(self):
        return self._coro.__await__()

    def cancel(self) -> None:
        self._coro.close()


class _Stream:
    def __init__(self, agen) -> None:
        self._agen = agen

    def __aiter__(self):
        return self._agen

    def cancel(self) -> None:
        asyncio.ensure_future(self._agen.aclose())


class LocalHandle:
    """The slice of Ray's DeploymentHandle the streams router uses, calling an object in-process."""

    def __init__(self, target, stream: bool = False) -> None:
        self._target, self._stream = target, stream

    def options(self, stream: bool = False) -> LocalHandle:
        return LocalHandle(self._target, stream)

    def __getattr__(self, name):
        method = getattr(self._target, name)
        wrap = _Stream if self._stream else _Call
        return type("M", (), {"remote": staticmethod(lambda *a, **k: wrap(method(*a, **k)))})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hub(tmp_path_factory, shared_dir):
    import uvicorn

    from serving.defaults import ensure_defaults
    from serving.handles import set_handles
    from serving.ingress import app
    from serving.streams import StreamManager

    home = tmp_path_factory.mktemp("hub")
    videos = tmp_path_factory.mktemp("videos")
    truth = synth_video.make_video(videos / "synth.mp4", shared_dir)
    saved = {k: os.environ.get(k) for k in ("HUB_HOME", "HUB_TRACKING_URI", "HUB_REGISTRY_URI")}
    os.environ["HUB_HOME"] = str(home)
    os.environ.pop("HUB_TRACKING_URI", None)
    os.environ.pop("HUB_REGISTRY_URI", None)
    reset_settings()
    ensure_defaults(["see"])  # the detector comes from the registry, as in production
    options = {"file_roots": [str(videos)], "batch": {"max_batch_size": 4, "max_wait_ms": 5}}
    manager_cls = StreamManager.func_or_class
    manager = manager_cls(options)
    set_handles({"streams": LocalHandle(manager)})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    state = {"url": url, "video": videos / "synth.mp4", "truth": truth, "manager": manager,
             "options": options, "cls": manager_cls}
    yield state
    server.should_exit = True
    thread.join(10)
    state["manager"].core.close()
    restore_env(saved)
    reset_settings()


def camera(video, camera_id="synth", **extra) -> dict:
    return {"camera_id": camera_id, "url": str(video), "analysis_fps": 4.0, "realtime": False,
            "zones": [{"zone_id": "kerb", "points": synth_video.KERB_ZONE, "normalized": True},
                      {"zone_id": "road", "points": synth_video.ROAD_ZONE, "normalized": True}],
            "rules": [{"kind": "illegal_parking", "zone_id": "kerb", "min_dwell_s": 4.0, "exit_grace_s": 1.5},
                      {"kind": "spill", "zone_id": "road", "min_s": 4.0}], **extra}


BAD_CAMERAS = [
    ("no url", {"camera_id": "x"}, "url"),
    ("rule on a missing zone", {"camera_id": "x", "url": "rtsp://10.0.0.1/s",
                                "rules": [{"kind": "spill", "zone_id": "road"}]}, "zone"),
    ("unknown rule kind", {"camera_id": "x", "url": "rtsp://10.0.0.1/s", "rules": [{"kind": "speeding", "zone_id": "z"}]},
     "rules"),
    ("file outside the allowed folders", {"camera_id": "x", "url": "/etc/hostname"}, "url"),
    ("unsupported scheme", {"camera_id": "x", "url": "ftp://10.0.0.1/cam"}, "url"),
    ("bad camera id", {"camera_id": "../x", "url": "rtsp://10.0.0.1/s"}, "camera_id"),
]


@pytest.mark.parametrize("case,body,field", BAD_CAMERAS, ids=[c[0] for c in BAD_CAMERAS])
def test_bad_camera_is_a_400_naming_the_problem(hub, case, body, field):
    reply = httpx.post(f"{hub['url']}/v1/streams", json=body, timeout=30)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert field in (error.get("field") or "") + error["message"]


def test_streams_events_snapshot_and_sse_over_http(hub):
    url, truth = hub["url"], hub["truth"]
    events: list[dict] = []

    def listen():
        with httpx.stream("GET", f"{url}/v1/events/stream", params={"after_seq": 0}, timeout=120) as resp:
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
            from cli.commands.streams import iter_sse

            for item in iter_sse(resp.iter_lines()):
                events.append(item)
                if sum(e["phase"] == "started" for e in events) >= 2:
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    reply = httpx.post(f"{url}/v1/streams", json=camera(hub["video"]), timeout=120)
    assert reply.status_code == 200, reply.text
    assert reply.json()["camera_id"] == "synth"
    listed = httpx.get(f"{url}/v1/streams").json()["streams"]
    assert [s["camera_id"] for s in listed] == ["synth"]
    one = httpx.get(f"{url}/v1/streams/synth").json()
    # the model block also carries the follower's state (issue 14); its identity is what matters here
    assert {k: one["model"].get(k) for k in ("name", "version", "alias")} == {
        "name": "yolov8n-coco", "version": "1", "alias": "champion"}
    assert {"state", "fps", "frames_dropped", "frames_skipped", "reconnects"} <= set(one)

    listener.join(180)
    assert not listener.is_alive(), events
    assert sorted(e["rule"] for e in events if e["phase"] == "started") == ["illegal_parking", "spill"]

    deadline = time.monotonic() + 120
    while httpx.get(f"{url}/v1/streams/synth").json()["state"] != "ended":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    stored = httpx.get(f"{url}/v1/events", params={"camera_id": "synth"}).json()["events"]
    assert sorted(e["rule"] for e in stored) == ["illegal_parking", "spill"]
    parking = next(e for e in stored if e["rule"] == "illegal_parking")
    assert parking["started_ts"] == pytest.approx(truth.car_s[0], abs=1.0)
    assert httpx.get(f"{url}/v1/events", params={"rule": "spill"}).json()["events"][0]["rule"] == "spill"
    assert httpx.get(f"{url}/v1/events", params={"since": time.time() + 60}).json()["events"] == []
    assert httpx.get(f"{url}/v1/events", params={"since": "not a time"}).status_code == 400

    snap = httpx.get(f"{url}/v1/events/{parking['event_id']}/snapshot.jpg")
    assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(snap.content)).size == synth_video.SIZE
    assert httpx.get(f"{url}/v1/events/nope/snapshot.jpg").status_code == 404

    assert httpx.delete(f"{url}/v1/streams/synth").status_code == 200
    assert httpx.get(f"{url}/v1/streams/synth").status_code == 404

    # The stream manager restarts (a new replica on the same data): no stored event is lost.
    hub["manager"].core.close()
    hub["manager"] = hub["cls"](hub["options"])
    from serving.handles import set_handles

    set_handles({"streams": LocalHandle(hub["manager"])})
    again = httpx.get(f"{url}/v1/events", params={"camera_id": "synth"}).json()["events"]
    assert sorted(e["event_id"] for e in again) == sorted(e["event_id"] for e in stored)


def test_cli_talks_to_the_running_hub(hub):
    from typer.testing import CliRunner

    from cli.main import app

    runner = CliRunner()
    video = str(hub["video"])
    added = runner.invoke(app, ["streams", "add", "cli-cam", video, "--loop", "--fps", "2",
                                "--zone", "kerb:" + ",".join(f"{x},{y}" for x, y in synth_video.KERB_ZONE),
                                "--parking", "kerb:60", "--url", hub["url"]])
    assert added.exit_code == 0, added.output
    assert json.loads(added.output)["camera_id"] == "cli-cam"
    listed = runner.invoke(app, ["streams", "list", "--url", hub["url"]])
    assert listed.exit_code == 0 and "cli-cam" in listed.output
    from pipelines.rules.base import Event

    hub["manager"].core.store.record(Event("cli-1", "cli-cam", "illegal_parking", "kerb", 3, 1.0, None,
                                           (1.0, 2.0, 30.0, 40.0), 0.9, "car"))
    after = hub["manager"].core.store.last_seq() - 1
    tail = runner.invoke(app, ["events", "tail", "--after-seq", str(after), "--max-events", "1", "--url", hub["url"]])
    assert tail.exit_code == 0, tail.output
    assert json.loads(tail.output.splitlines()[0])["event_id"] == "cli-1"
    removed = runner.invoke(app, ["streams", "remove", "cli-cam", "--url", hub["url"]])
    assert removed.exit_code == 0 and "removed" in removed.output
    missing = runner.invoke(app, ["streams", "get", "cli-cam", "--url", hub["url"]])
    assert missing.exit_code == 2
