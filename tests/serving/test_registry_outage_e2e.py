"""A registry outage through a real running hub (its own, restarted in the test; run under the heavy lock).

The hub's registry is a real `mlflow server` (SQLite backend, proxied artifacts) on loopback:

1. the hub starts against it, registers its default `see` model and serves version 1;
2. the hub is stopped, the MLflow server is killed, and `hub serve` is started again: the replica
   starts from the champion cached under HUB_HOME, answers requests with version 1, and
   `/v1/models` says the registry is unreachable and that the model came from the cache;
3. the MLflow server comes back, `hub models register` + `hub models promote` make version 2 the
   champion, and the running hub follows it without a restart (and reports the registry reachable).

The in-process counterpart (one CapabilityServer, no Ray) is tests/registry/test_model_lifecycle.py.
"""

from __future__ import annotations

import os

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from hub.settings import reset_settings
from tests.registry.test_model_lifecycle import MlflowServer
from tests.serving.conftest import Hub, free_port
from tests.waiting import restore_env, wait_for

# Starts, stops and restarts a hub of its own in this process: scripts/test.sh runs it apart (own_hub).
pytestmark = [pytest.mark.serve, pytest.mark.own_hub]
KEY = "registry-outage-e2e-key-0123456789"
MODEL = "yolov8n-coco"
ENV = ("HUB_HOME", "HUB_API_KEYS", "HUB_TRACKING_URI", "HUB_REGISTRY_URI")

@pytest.fixture
def outage_env(tmp_path):
    """A HUB_HOME whose tracking and registry URI is a real MLflow server, and a hub config serving `see`."""
    mlflow = MlflowServer(tmp_path / "mlflow").start()
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    config = home / "serving.yaml"
    config.write_text(yaml.safe_dump({
        "http": {"host": "127.0.0.1", "port": port, "request_timeout_s": 30},
        "ray": {"num_cpus": 2, "metrics_export_port": free_port()},
        # poll_s 1: a promote is followed within seconds
        "capabilities": {"see": {"model": f"models:/{MODEL}@champion", "num_cpus": 0.2, "poll_s": 1}},
    }))
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(HUB_HOME=str(home), HUB_API_KEYS=f"ci:{KEY}", HUB_TRACKING_URI=mlflow.url)
    os.environ.pop("HUB_REGISTRY_URI", None)  # the registry is the tracking server
    reset_settings()
    yield mlflow, config, Hub(url=f"http://127.0.0.1:{port}", key=KEY)
    mlflow.stop()
    restore_env(saved)
    reset_settings()


def start_hub(config, hub: Hub) -> None:
    from serving.launch import start

    start(config)
    with hub.client() as c:
        wait_for(lambda: c.get("/readyz").status_code == 200, 180, "the hub to be ready")


def see_status(c) -> dict:
    reply = c.get("/v1/models")
    assert reply.status_code == 200, reply.text
    return next(s for s in reply.json()["capabilities"] if s["capability"] == "see")


def see_version(c, image: bytes) -> str:
    reply = c.post("/v1/see", files={"image": ("bus.jpg", image)})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert {"bus", "person"} <= {d["class_name"] for d in body["detections"]}  # a real answer, not a stub
    return body["model"]["version"]


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_a_restarted_hub_serves_the_cached_champion_while_mlflow_is_down_and_follows_a_promote_after(
        outage_env, shared_dir, tmp_path):
    from models.detection import prepare_default
    from serving.launch import stop

    mlflow, config, hub = outage_env
    image = (shared_dir / "data/images/bus.jpg").read_bytes()
    try:
        start_hub(config, hub)  # first start: bootstraps the default model into the server, caches it
        with hub.client() as c:
            status = see_status(c)
            assert status["model"]["version"] == "1" and status["registry"]["reachable"] is True
            assert see_version(c, image) == "1"
    finally:
        stop()

    mlflow.stop()  # the outage: killed, as abruptly as a crash
    try:
        start_hub(config, hub)  # `hub serve` restarted while the registry is away
        with hub.client() as c:
            status = see_status(c)
            assert status["ready"] is True and status["model"]["version"] == "1", status
            registry = status["registry"]
            assert registry["reachable"] is False and registry["started_from_cache"] is True, registry
            assert "unavailable" in registry["error"] and registry["down_since_wall"] is not None
            assert see_version(c, image) == "1"  # answered by the cached champion

            mlflow.start()  # the registry is back (same port, same database); ops promote a new version
            artifact = tmp_path / "see-v2"
            prepare_default(shared_dir, artifact)
            assert f"{MODEL}: registered version 2" in cli("models", "register", "see", str(artifact))
            assert "-> version 2" in cli("models", "promote", MODEL, "2", "--reason", "after the outage")
            followed = wait_for(lambda: (s := see_status(c))["model"]["version"] == "2" and s, 120,
                                "the hub to follow the promote")
            assert followed["registry"]["reachable"] is True and followed["registry"]["error"] is None
            assert see_version(c, image) == "2"
    finally:
        stop()
