"""The same store against a real MLflow tracking server over HTTP (artifacts proxied by it)."""

import json
import subprocess
import sys
import time

import httpx
import pytest

from registry.store import MlflowStore
from tests.serving.conftest import free_port


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'server.db'}", "--artifacts-destination", str(root / "art")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, "mlflow server exited"
        assert time.monotonic() < deadline, "mlflow server did not start"
        time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_register_resolve_rollback_over_http(mlflow_server, tmp_path):
    store = MlflowStore(tracking_uri=mlflow_server, registry_uri=mlflow_server, artifact_root=None,
                        cache_dir=tmp_path / "cache")
    versions = []
    for tag in ("one", "two"):
        art = tmp_path / tag
        art.mkdir()
        (art / "hub.json").write_text(json.dumps({"capability": "echo", "format": "text", "metadata": {}}))
        (art / "weights.txt").write_text(tag)
        versions.append(store.register("echo-remote", art, metadata={"capability": "echo"}))
        store.set_alias("echo-remote", "champion", versions[-1])
    resolved = store.resolve("models:/echo-remote@champion")
    assert (resolved.version, (resolved.artifact_dir / "weights.txt").read_text()) == ("2", "two")
    assert store.rollback("echo-remote") == "1"
    assert (store.resolve("models:/echo-remote@champion").artifact_dir / "weights.txt").read_text() == "one"
