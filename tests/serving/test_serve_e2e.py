"""The spine end to end: real Ray Serve, real MLflow registry, real detector, real HTTP."""

from __future__ import annotations

import base64
import json
import shutil
import time

import pytest

from registry.store import MlflowStore

pytestmark = pytest.mark.serve


def _bus(shared_dir) -> str:
    return base64.b64encode((shared_dir / "data/images/bus.jpg").read_bytes()).decode()


def _served_version(client, image_b64: str) -> str:
    reply = client.post("/v1/see", json={"image": image_b64})
    assert reply.status_code == 200, reply.text
    return reply.json()["model"]["version"]


def _wait_for_version(client, image_b64: str, version: str, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while (served := _served_version(client, image_b64)) != version:
        assert time.monotonic() < deadline, f"still serving version {served}, expected {version}"
        time.sleep(0.5)


def test_inference_names_model_and_version(hub_server, shared_dir):
    with hub_server.client() as c:
        reply = c.post("/v1/see", json={"image": _bus(shared_dir)})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"]["name"] == "yolov8n-coco"
    assert body["model"]["version"] == "1"
    assert body["model"]["alias"] == "champion"


@pytest.mark.parametrize(
    ("key", "path", "method", "status"),
    [
        (None, "/v1/see", "post", 401),
        ("wrong-key", "/v1/see", "post", 401),
        (None, "/v1/models", "get", 401),
        (None, "/healthz", "get", 200),
        (None, "/readyz", "get", 200),
        ("default", "/v1/models", "get", 200),
    ],
)
def test_api_key_required_beyond_loopback(hub_server, shared_dir, key, path, method, status):
    with hub_server.client(key=key) as c:
        reply = c.post(path, json={"image": _bus(shared_dir)}) if method == "post" else c.get(path)
    assert reply.status_code == status, reply.text


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "field"),
    [
        ("/v1/nothing", {"json": {}}, 404, None),
        ("/v1/see", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, None),
        ("/v1/see", {"json": {"imag": "x"}}, 400, "image"),
        ("/v1/see", {"json": {"image": "@@@"}}, 400, "image"),
        ("/v1/see", {"content": b"x" * (21 * 1024 * 1024), "headers": {"content-type": "image/jpeg"}}, 413, None),
    ],
)
def test_bad_requests_get_clear_errors(hub_server, path, kwargs, status, field):
    with hub_server.client() as c:
        reply = c.post(path, **kwargs)
        assert reply.status_code == status, reply.text
        error = reply.json()["error"]
        assert error["message"]
        if field:
            assert field in (error.get("field") or "") + error["message"]
        assert c.get("/readyz").status_code == 200  # the replica survived


def test_models_and_metrics_endpoints(hub_server, shared_dir):
    with hub_server.client() as c:
        c.post("/v1/see", json={"image": _bus(shared_dir)})
        models = c.get("/v1/models").json()
        assert {m["capability"]: m["model"]["version"] for m in models["capabilities"]}["see"] == "1"
        assert c.get("/docs").status_code == 200
        assert "/v1/{capability}" in c.get("/openapi.json").json()["paths"]
        deadline = time.monotonic() + 30
        while "ray_hub_requests_total" not in (text := c.get("/metrics").text):
            assert time.monotonic() < deadline, text[:500]
            time.sleep(1)
        assert "ray_serve_" in text and "ray_hub_batch_size" in text


def test_alias_moves_without_restart_and_broken_version_is_refused(hub_server, shared_dir, tmp_path):
    store = MlflowStore.from_settings()
    v1 = store.resolve("models:/yolov8n-coco/1")
    image = _bus(shared_dir)
    with hub_server.client() as c:
        # version 2: the same weights registered again (what a retrain that changed nothing gives)
        v2 = store.register("yolov8n-coco", v1.artifact_dir, metadata={"capability": "see"})
        store.set_alias("yolov8n-coco", "champion", v2, reason="test promote")
        _wait_for_version(c, image, v2)

        from typer.testing import CliRunner

        from cli.main import app

        result = CliRunner().invoke(app, ["models", "rollback", "yolov8n-coco"])
        assert result.exit_code == 0, result.output
        _wait_for_version(c, image, "1")

        # version 3: an artifact whose weights are garbage must be refused; version 1 keeps serving
        broken = tmp_path / "broken"
        shutil.copytree(v1.artifact_dir, broken, ignore=shutil.ignore_patterns(".complete"))
        for weights in broken.rglob("*.onnx"):
            weights.write_bytes(b"this is not an onnx model")
        v3 = store.register("yolov8n-coco", broken, metadata={"capability": "see"})
        store.set_alias("yolov8n-coco", "champion", v3, reason="test broken")
        deadline = time.monotonic() + 60
        while True:
            status = {m["capability"]: m for m in c.get("/v1/models").json()["capabilities"]}["see"]
            if status["last_error"]:
                break
            assert time.monotonic() < deadline, json.dumps(status)
            time.sleep(0.5)
        assert f"version {v3}" in status["last_error"]
        assert _served_version(c, image) == "1"
        store.rollback("yolov8n-coco", reason="test cleanup")
        assert store.alias_version("yolov8n-coco", "champion") == "1"
