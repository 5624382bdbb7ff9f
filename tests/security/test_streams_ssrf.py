"""SSRF and credential leaks through `POST /v1/streams`, over real HTTP without Ray: the real ingress
app served by uvicorn on 127.0.0.1, the real `StreamManager` behind an in-process handle, the
detector resolved from a fresh MLflow registry (as `tests/serving/test_streams_api.py` does).

The streams config admits one private range (10.77.0.0/16) and loopback port-less 127.0.0.1 only
for the redaction cases; everything else private must be refused with a 400 before any
connection is tried."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time

import httpx
import pytest

from hub.settings import reset_settings
from tests.pipelines import synth_video
from tests.serving.test_streams_api import LocalHandle, free_port
from tests.waiting import restore_env

PASSWORD = "Sup3r-S3cret-pw"
ENV_PASSWORD = "EnvOnly-S3cret-pw"


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused at once)."""
    return free_port()


@pytest.fixture(scope="module")
def hub(tmp_path_factory, shared_dir):
    import uvicorn

    from serving.defaults import ensure_defaults
    from serving.handles import set_handles
    from serving.ingress import app
    from serving.streams import StreamManager

    home = tmp_path_factory.mktemp("hub")
    videos = tmp_path_factory.mktemp("videos")
    synth_video.make_video(videos / "synth.mp4", shared_dir)
    saved = {k: os.environ.get(k) for k in ("HUB_HOME", "HUB_TRACKING_URI", "HUB_REGISTRY_URI", "HUB_CAMERA_T_PASS")}
    os.environ["HUB_HOME"] = str(home)
    os.environ["HUB_CAMERA_T_PASS"] = ENV_PASSWORD
    os.environ.pop("HUB_TRACKING_URI", None)
    os.environ.pop("HUB_REGISTRY_URI", None)
    reset_settings()
    ensure_defaults(["see"])
    options = {"file_roots": [str(videos)], "batch": {"max_batch_size": 2, "max_wait_ms": 5},
               "outbound": {"allow": ["10.77.0.0/16", "127.0.0.1/32"]}}
    manager = StreamManager.func_or_class(options)
    set_handles({"streams": LocalHandle(manager)})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    state = {"url": f"http://127.0.0.1:{port}", "manager": manager, "home": home, "video": videos / "synth.mp4",
             "options": options}
    yield state
    server.should_exit = True
    thread.join(10)
    state["manager"].core.close()
    restore_env(saved)
    reset_settings()


def manager_at(options: dict, data_dir):
    """A StreamManager (Ray decorator peeled off) on its own data folder: one hub per folder."""
    from serving.streams import StreamManager, StreamManagerCore

    manager = object.__new__(StreamManager.func_or_class)
    manager.core = StreamManagerCore(options, data_dir=data_dir)
    return manager


@pytest.fixture
def strict_hub(hub, tmp_path):
    """The same HTTP app, with a stream manager whose policy admits nothing private."""
    from serving.handles import set_handles

    manager = manager_at({"persist_cameras": False, "file_roots": [str(hub["video"].parent)]}, tmp_path / "data")
    set_handles({"streams": LocalHandle(manager)})
    yield hub["url"]
    manager.core.close()
    set_handles({"streams": LocalHandle(hub["manager"])})


REFUSED = [
    ("loopback", "rtsp://127.0.0.1:554/s1", "loopback"),
    ("metadata service", "rtsp://169.254.169.254/latest", "link-local"),
    ("private 10.x", "rtsp://10.0.0.17/s1", "private"),
    ("name resolving to loopback", "rtsp://localhost:8265/api/jobs", "localhost resolves to 127.0.0.1"),
    ("decimal loopback", "rtsp://2130706433/s1", "loopback"),
    ("ipv6 loopback", "rtsp://[::1]/s1", "loopback"),
    ("mapped loopback", "rtsp://[::ffff:127.0.0.1]/s1", "loopback"),
    ("http camera not enabled", "http://93.184.215.14/mjpeg", "scheme http://"),
    ("tcp scheme", "tcp://93.184.215.14:9000", "scheme tcp://"),
    ("udp scheme", "udp://93.184.215.14:9000", "scheme udp://"),
    ("file scheme", "file:///etc/passwd", "scheme file://"),
    # found by the fuzz suite: a NUL reached the source as a 500 ("embedded null byte")
    ("NUL in the host", "rtsp://cam\x00.example.com/s1", "should match pattern"),
    ("NUL in a file path", "../shared/data/video/a\x00.mp4", "should match pattern"),
    ("newline in the path", "rtsp://93.184.215.14/s1\r\nX-Injected: 1", "should match pattern"),
]


@pytest.mark.parametrize("case,url,why", REFUSED, ids=[c[0] for c in REFUSED])
def test_private_and_odd_destinations_are_refused(strict_hub, case, url, why):
    reply = httpx.post(f"{strict_hub}/v1/streams", json={"camera_id": "ssrf", "url": url}, timeout=30)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["field"] == "url" and why in error["message"]
    assert httpx.get(f"{strict_hub}/v1/streams/ssrf", timeout=30).status_code == 404


WEBHOOKS = [
    ("loopback webhook", "https://127.0.0.1:8443/hook", "loopback"),
    ("metadata webhook", "https://169.254.169.254/hook", "link-local"),
    ("plain http webhook", "http://93.184.215.14/hook", "scheme http://"),
]


@pytest.mark.parametrize("case,hook,why", WEBHOOKS, ids=[c[0] for c in WEBHOOKS])
def test_private_or_plain_http_webhooks_are_refused(hub, strict_hub, case, hook, why):
    body = {"camera_id": "hooked", "url": str(hub["video"]), "realtime": False, "webhooks": [hook]}
    reply = httpx.post(f"{strict_hub}/v1/streams", json=body, timeout=60)
    assert reply.status_code == 400, reply.text
    assert why in reply.json()["error"]["message"]


FORBIDDEN_OPTIONS = [
    ("method", {"method": "POST"}),
    ("post_data", {"post_data": "a=1"}),
    ("headers", {"headers": "X-Injected: 1\r\n"}),
    ("protocol_whitelist", {"protocol_whitelist": "file,http,tcp"}),
    ("timeout", {"timeout": "5; rm -rf /"}),
]


@pytest.mark.parametrize("name,options", FORBIDDEN_OPTIONS, ids=[c[0] for c in FORBIDDEN_OPTIONS])
def test_forbidden_ffmpeg_options_are_refused_by_name(hub, name, options):
    body = {"camera_id": "opts", "url": "rtsp://10.77.0.9/s1", "options": options}
    reply = httpx.post(f"{hub['url']}/v1/streams", json=body, timeout=30)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["field"] == "options" and repr(name) in error["message"]


def test_allow_listed_private_camera_is_accepted(hub):
    body = {"camera_id": "lan-cam", "url": "rtsp://10.77.3.4:554/s1",
            "options": {"rtsp_transport": "tcp", "timeout": "2000000"}}
    reply = httpx.post(f"{hub['url']}/v1/streams", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    assert reply.json()["state"] in ("connecting", "reconnecting", "live")
    assert httpx.delete(f"{hub['url']}/v1/streams/lan-cam", timeout=30).status_code == 200


def test_file_cameras_under_the_data_folders_still_work(hub):
    body = {"camera_id": "file-cam", "url": str(hub["video"]), "realtime": False}
    reply = httpx.post(f"{hub['url']}/v1/streams", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    assert httpx.delete(f"{hub['url']}/v1/streams/file-cam", timeout=30).status_code == 200


def test_the_policy_is_checked_again_before_every_reconnect(hub):
    """Against DNS rebinding the guard runs before each connection, not only when the camera is
    added: a source that fails three times has asked the policy three times."""
    from pipelines.sources import CameraState, FrameSource, SourceConfig

    core, checked = hub["manager"].core, []

    def guard(url: str) -> str:
        checked.append(url)
        return core.cameras._guard(url)

    def refuse(config):
        raise ConnectionRefusedError(f"Connection refused: {config.url}")

    config = SourceConfig(url="rtsp://10.77.0.7/s1", guard=guard, max_failures=3, backoff_initial_s=0.01)
    source = FrameSource("rebind", config, opener=refuse).start()
    deadline = time.monotonic() + 10
    while source.state is not CameraState.FAILED:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert checked == ["rtsp://10.77.0.7/s1"] * 3
    from hub.outbound import OutboundPolicy

    strict = OutboundPolicy()
    refused = SourceConfig(url="rtsp://localhost:554/s1", guard=lambda url: strict.check_camera(url).pinned_url())
    with pytest.raises(Exception, match="loopback"):
        refused.connect_config()


def _failed(url: str, camera_id: str, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        state = httpx.get(f"{url}/v1/streams/{camera_id}", timeout=30).json()
        if state["state"] == "failed":
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.2)


CREDENTIALED = [
    ("literal user:pass", f"rtsp://admin:{PASSWORD}@127.0.0.1:{{port}}/s1", PASSWORD),
    ("env reference", "rtsp://admin:${HUB_CAMERA_T_PASS}@127.0.0.1:{port}/s1", ENV_PASSWORD),
]


@pytest.mark.parametrize("case,template,secret", CREDENTIALED, ids=[c[0] for c in CREDENTIALED])
def test_camera_password_never_leaks(hub, caplog, capfd, case, template, secret):
    url, camera_id = hub["url"], f"creds-{len(template)}"
    caplog.set_level(logging.DEBUG)
    events: list[str] = []

    def listen():  # the SSE feed while the camera fails
        with httpx.stream("GET", f"{url}/v1/events/stream", params={"after_seq": 0}, timeout=3) as resp:
            for line in resp.iter_lines():
                events.append(line)
                if len(events) > 50:
                    return

    listener = threading.Thread(target=lambda: _quietly(listen), daemon=True)
    listener.start()
    body = {"camera_id": camera_id, "url": template.replace("{port}", str(closed_port())), "max_failures": 2}
    added = httpx.post(f"{url}/v1/streams", json=body, timeout=120)
    assert added.status_code == 200, added.text
    state = _failed(url, camera_id)
    assert state["last_error"] and "***" in state["url"]
    listing = httpx.get(f"{url}/v1/streams", timeout=30).text
    listener.join(6)
    persisted = (hub["home"] / "data" / "streams" / "cameras.json").read_text()
    assert camera_id in persisted
    out, err = capfd.readouterr()
    seen = {"api": json.dumps(state) + listing + added.text, "sse": "\n".join(events),
            "logs": caplog.text + out + err, "cameras.json": persisted}
    for where, text in seen.items():
        assert secret not in text, f"the password shows in {where}"
    httpx.delete(f"{url}/v1/streams/{camera_id}", timeout=30)


def _quietly(fn) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the read timeout ends the listener
        fn()


def test_env_reference_is_persisted_as_given_and_literal_credentials_are_not_restored(hub):
    from serving.streams import StreamManager

    port = closed_port()
    for camera_id, cam_url in (("ref-cam", f"rtsp://admin:${{HUB_CAMERA_T_PASS}}@127.0.0.1:{port}/s1"),
                               ("lit-cam", f"rtsp://admin:{PASSWORD}@127.0.0.1:{port}/s1")):
        body = {"camera_id": camera_id, "url": cam_url, "max_failures": 1}
        assert httpx.post(f"{hub['url']}/v1/streams", json=body, timeout=60).status_code == 200
    saved = json.loads((hub["home"] / "data" / "streams" / "cameras.json").read_text())
    by_id = {c["camera_id"]: c for c in saved}
    assert by_id["ref-cam"]["url"].startswith("rtsp://admin:${HUB_CAMERA_T_PASS}@")
    assert by_id["lit-cam"]["credentials_not_persisted"] and PASSWORD not in json.dumps(saved)
    from serving.handles import set_handles

    hub["manager"].core.close()  # a restart: one hub per data folder
    hub["manager"] = StreamManager.func_or_class(hub["options"])
    set_handles({"streams": LocalHandle(hub["manager"])})
    ids = {s["camera_id"] for s in hub["manager"].core.list_streams()}
    assert "ref-cam" in ids and "lit-cam" not in ids
    httpx.delete(f"{hub['url']}/v1/streams/ref-cam", timeout=30)


def test_unknown_or_foreign_env_references_are_refused(hub):
    for ref, why in (("${HUB_CAMERA_NOT_SET}", "not set"), ("${HUB_API_KEYS}", "HUB_CAMERA_*")):
        body = {"camera_id": "envref", "url": f"rtsp://admin:{ref}@10.77.0.5/s1"}
        reply = httpx.post(f"{hub['url']}/v1/streams", json=body, timeout=30)
        assert reply.status_code == 400 and why in reply.json()["error"]["message"], reply.text
