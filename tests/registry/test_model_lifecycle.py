"""Model lifecycle without single points of failure, with the real `see` detector:

- a registry outage: the MLflow server is stopped, a replica (re)starts from the locally cached
  champion and says so, the outage is never reported as "does not exist", and once the server is
  back a promote is followed;
- a transient load failure is retried with back-off; a deterministic one refuses that version;
- `hub models register` loads the artifact and runs its sample request first (a truncated ONNX is
  refused and nothing is registered).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from hub.errors import ModelLoadError, ModelNotFound, RegistryUnavailable
from hub.settings import reset_settings
from registry.store import MlflowStore
from serving.config import CapabilityConfig
from serving.deployment import CapabilityServer
from serving.lifecycle import LoadAttempts, LoadPolicy, is_transient
from tests.serving.conftest import free_port

NAME = "yolov8n-coco"
CHAMPION = f"models:/{NAME}@champion"


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 that can be stopped and started again on the same port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers",
             "1", "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}", "--artifacts-destination",
             str(self.root / "art")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, "mlflow server exited"
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)

    def stop(self) -> None:
        """An outage as abrupt as a crash: the server and its workers are killed at once."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)
            self.proc = None


@pytest.fixture(scope="module")
def see_artifact(shared_dir, tmp_path_factory) -> Path:
    from models.detection import prepare_default

    art = tmp_path_factory.mktemp("see-artifact")
    prepare_default(shared_dir, art)
    return art


def truncated_copy(artifact: Path, where: Path) -> Path:
    broken = where / "truncated"
    shutil.copytree(artifact, broken)
    onnx = next(broken.glob("*.onnx"))
    onnx.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])  # an upload cut off half way
    return broken


@pytest.fixture
def fast_fail(monkeypatch):
    # A stopped server is noticed at once (connection refused) instead of after MLflow's retries.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")  # a loaded CI machine answers slowly


def serve_see(poll_s: float = 60.0) -> CapabilityServer:
    server = CapabilityServer("see")
    server.configure(CapabilityConfig(model=CHAMPION, poll_s=poll_s, device="cpu"))
    return server


def answer_version(server: CapabilityServer) -> str:
    sample = server.active.capability.sample_request()
    return server.run([sample])[0].model.version


def test_registry_outage_serves_the_cached_champion_and_follows_a_promote_after(
        see_artifact, hub_home, tmp_path, monkeypatch, fast_fail):
    mlflow = MlflowServer(tmp_path).start()
    monkeypatch.setenv("HUB_TRACKING_URI", mlflow.url)
    reset_settings()
    try:
        store = MlflowStore.from_settings()
        store.set_alias(NAME, "champion", store.register(NAME, see_artifact, metadata={"capability": "see"}))
        first = serve_see()  # a replica that saw the registry once: the champion is in its cache
        assert answer_version(first) == "1" and first.status()["registry"]["reachable"] is True

        mlflow.stop()  # the outage
        with pytest.raises(RegistryUnavailable):
            store.alias_version(NAME, "champion")  # not "does not exist"
        with pytest.raises(RegistryUnavailable):
            store.resolve("models:/never-cached@champion")

        restarted = serve_see()  # `hub serve` restarted during the outage
        status = restarted.status()
        assert status["ready"] is True and status["model"]["version"] == "1"
        assert status["registry"]["reachable"] is False and status["registry"]["started_from_cache"] is True
        assert "unavailable" in status["registry"]["error"]
        assert answer_version(restarted) == "1"
        assert restarted.refresh() is False  # polling during the outage keeps serving

        mlflow.start()  # the registry is back; ops promote a new version
        second = store.register(NAME, see_artifact, metadata={"capability": "see"})
        store.set_alias(NAME, "champion", second, reason="after the outage")
        assert restarted.refresh() is True
        assert answer_version(restarted) == second == "2"
        assert restarted.status()["registry"]["reachable"] is True
    finally:
        mlflow.stop()


def test_no_cache_and_no_registry_is_a_clear_outage_error(hub_home, tmp_path, monkeypatch, fast_fail):
    monkeypatch.setenv("HUB_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    reset_settings()
    with pytest.raises(RegistryUnavailable, match="no earlier version"):
        serve_see()


def test_transient_failure_is_retried_and_a_broken_version_is_refused(see_artifact, hub_home, tmp_path):
    store = MlflowStore.from_settings()
    store.set_alias(NAME, "champion", store.register(NAME, see_artifact, metadata={"capability": "see"}))
    server = serve_see()
    server.attempts = LoadAttempts(LoadPolicy(backoff_initial_s=0.05, backoff_max_s=0.05))

    # version 2's files are missing for a moment (an artifact store hiccup): retried, then served
    v2 = store.register(NAME, see_artifact, metadata={"capability": "see"})
    source = Path(store.client.get_model_version(NAME, v2).source.removeprefix("file://"))
    source.rename(source.with_name("away"))
    store.set_alias(NAME, "champion", v2)
    assert server.refresh() is False and answer_version(server) == "1"
    assert "retry in" in server.status()["last_error"]
    assert server.refresh() is False  # still within its back-off: not tried again yet
    source.with_name("away").rename(source)
    time.sleep(0.06)
    assert server.refresh() is True and answer_version(server) == "2"

    # version 3 is a truncated ONNX registered around the CLI: refused for good, 2 keeps serving
    v3 = store.register(NAME, truncated_copy(see_artifact, tmp_path), metadata={"capability": "see"})
    store.set_alias(NAME, "champion", v3)
    assert server.refresh() is False and answer_version(server) == "2"
    time.sleep(0.06)
    assert server.refresh() is False  # not retried: the artifact itself is bad
    assert server.status()["refused_versions"] == [f"{NAME}/{v3}"]


@pytest.mark.parametrize("exc,transient", [
    (RegistryUnavailable("mlflow down"), True),
    (TimeoutError("download"), True),
    (ConnectionResetError("peer"), True),
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), True),
    (ModelLoadError("failed to load: [ONNXRuntimeError] INVALID_PROTOBUF"), False),
    (ModelNotFound("no such model"), False),
    (ValueError("hub.json names a missing file"), False),
])
def test_transient_or_deterministic(exc, transient):
    wrapped = ModelLoadError("x version 2 failed to load")
    wrapped.__cause__ = exc
    assert is_transient(exc) is transient and is_transient(wrapped) is transient


def test_backoff_doubles_up_to_its_cap():
    attempts = LoadAttempts(LoadPolicy(backoff_initial_s=2, backoff_max_s=10))
    verdicts = [attempts.failed("m/2", TimeoutError(), now=0.0) for _ in range(5)]
    assert verdicts == ["retry in 2 s", "retry in 4 s", "retry in 8 s", "retry in 10 s", "retry in 10 s"]
    assert attempts.blocked("m/2", now=9.0) and not attempts.blocked("m/2", now=10.5)
    assert attempts.failed("m/3", ValueError("bad")) == "refused" and attempts.blocked("m/3", now=1e9)


def test_register_refuses_an_artifact_that_does_not_load(see_artifact, hub_home, tmp_path):
    runner = CliRunner()
    broken = runner.invoke(app, ["models", "register", "see", str(truncated_copy(see_artifact, tmp_path)),
                                 "--name", "see-candidate"])
    assert broken.exit_code == 2 and "not registered" in broken.output
    assert MlflowStore.from_settings().alias_version("see-candidate", "champion") is None
    assert not MlflowStore.from_settings().has_version("see-candidate", "1")
    good = runner.invoke(app, ["models", "register", "see", str(see_artifact), "--name", "see-candidate",
                               "--alias", "champion"])
    assert good.exit_code == 0, good.output
    assert MlflowStore.from_settings().alias_version("see-candidate", "champion") == "1"
