"""The ingress's request guard over real HTTP: the real FastAPI app of the hub served by uvicorn on
127.0.0.1 (no Ray; the streams routes reach an in-process stream manager). Host check against DNS
rebinding, CSRF defence by content type and Origin, and the body cap on a route that used to read
any body whole."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from serving.guard import GuardSettings, check_request, host_allowed
from tests.serving.test_streams_api import LocalHandle, free_port

CAP = 20 << 20  # the default http.max_body_mib (no Ingress config in this app)


@pytest.fixture(scope="module")
def hub_url(tmp_path_factory):
    import os

    import uvicorn

    from hub.settings import reset_settings
    from serving import ingress
    from serving.config import ServingConfig
    from serving.handles import set_handles
    from serving.ingress import app
    from serving.streams import StreamManager

    home = tmp_path_factory.mktemp("hub")
    saved = os.environ.get("HUB_HOME")
    os.environ["HUB_HOME"] = str(home)
    reset_settings()
    # No camera is ever started here, so the detector is never needed.
    manager = StreamManager.func_or_class({"persist_cameras": False})
    set_handles({"streams": LocalHandle(manager)})
    saved_config = ingress._STATE.get("config")
    ingress._STATE["config"] = ServingConfig.model_validate({"capabilities": {}})  # loopback, 20 MiB
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    manager.core.close()
    ingress._STATE.pop("config", None)
    if saved_config is not None:
        ingress._STATE["config"] = saved_config
    if saved is None:
        os.environ.pop("HUB_HOME", None)
    else:
        os.environ["HUB_HOME"] = saved
    reset_settings()


CAMERA = b'{"camera_id": "x", "url": "rtsp://10.0.0.1/s"}'
REFUSED = [
    ("text/plain JSON (a form-less CSRF)", {"content-type": "text/plain"}, 415, "content-type"),
    ("urlencoded JSON", {"content-type": "application/x-www-form-urlencoded"}, 415, "content-type"),
    ("no content type", {}, 415, "content-type"),
    ("cross-site origin", {"content-type": "application/json", "origin": "http://evil.example"}, 403, "origin"),
    ("opaque origin", {"content-type": "application/json", "origin": "null"}, 403, "origin"),
    ("sec-fetch-site cross-site", {"content-type": "application/json", "sec-fetch-site": "cross-site"}, 403, "origin"),
    ("rebound host name", {"content-type": "application/json", "host": "evil.example"}, 400, "host"),
]


@pytest.mark.parametrize("case,headers,status,field", REFUSED, ids=[c[0] for c in REFUSED])
def test_cross_site_and_rebinding_requests_are_refused(hub_url, case, headers, status, field):
    reply = httpx.post(f"{hub_url}/v1/streams", content=CAMERA, headers=headers, timeout=30)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["field"] == field


def test_same_origin_json_passes_the_guard(hub_url):
    origin = hub_url
    reply = httpx.post(f"{hub_url}/v1/streams", content=CAMERA,
                       headers={"content-type": "application/json", "origin": origin}, timeout=30)
    assert reply.status_code == 400 and "private" in reply.json()["error"]["message"]  # the policy, not the guard


def test_declared_body_over_the_cap_is_refused_before_reading(hub_url):
    reply = httpx.post(f"{hub_url}/v1/streams", content=b"{" + b" " * CAP + b"}",
                       headers={"content-type": "application/json"}, timeout=60)
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "payload_too_large"


def test_chunked_body_over_the_cap_is_refused_while_reading(hub_url):
    def chunks():
        yield b'{"camera_id": "x", "pad": "'
        for _ in range(CAP // (1 << 20) + 2):
            yield b"a" * (1 << 20)
        yield b'"}'

    reply = httpx.post(f"{hub_url}/v1/streams", content=chunks(), headers={"content-type": "application/json"},
                       timeout=60)
    assert reply.status_code == 413, reply.text
    assert reply.json()["error"]["code"] == "payload_too_large"


HOSTS = [
    ("127.0.0.1:8000", GuardSettings(), True),
    ("localhost", GuardSettings(), True),
    ("[::1]:8000", GuardSettings(), True),
    ("hub.city.lan:8000", GuardSettings(), False),
    ("hub.city.lan", GuardSettings(allowed_hosts=("hub.city.lan",), loopback=False), True),
    ("x.city.lan", GuardSettings(allowed_hosts=("*.city.lan",), loopback=False), True),
    ("evil.example", GuardSettings(allowed_hosts=("hub.city.lan",), loopback=False), False),
    ("anything.example", GuardSettings(loopback=False), True),
]


@pytest.mark.parametrize("host,settings,allowed", HOSTS, ids=[h[0] for h in HOSTS])
def test_host_allow_list(host, settings, allowed):
    assert host_allowed(host, settings) is allowed


def test_review_forms_keep_urlencoded_but_not_cross_site():
    same = {"host": "127.0.0.1:8000", "content-type": "application/x-www-form-urlencoded", "content-length": "9",
            "origin": "http://127.0.0.1:8000"}
    assert check_request("POST", "/ui/login", same, GuardSettings()) is None
    status, _ = check_request("POST", "/ui/login", {**same, "origin": "https://evil.example"}, GuardSettings())
    assert status == 403
    raw_image = {"host": "127.0.0.1:8000", "content-type": "image/jpeg", "content-length": "100"}
    assert check_request("POST", "/v1/see", raw_image, GuardSettings()) is None


FRAMEWORK_ERRORS = [
    ("GET", "/no/such/route", 404, "not_found"),
    ("PUT", "/v1/streams", 405, "method_not_allowed"),
    ("GET", "/v1/events?limit=abc", 400, "invalid_input"),
]


@pytest.mark.parametrize("method,path,status,code", FRAMEWORK_ERRORS, ids=[f"{m} {p}" for m, p, _, _ in FRAMEWORK_ERRORS])
def test_framework_errors_use_the_hub_error_shape(hub_url, method, path, status, code):
    """Found by the fuzz suite: FastAPI's own 404/405/422 answered {"detail": ...}."""
    reply = httpx.request(method, f"{hub_url}{path}", headers={"content-type": "application/json"}, timeout=30)
    assert reply.status_code == status
    assert reply.json()["error"]["code"] == code
