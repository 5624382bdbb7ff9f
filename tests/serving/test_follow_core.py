"""Cameras follow the registry, in-process (no Ray): a `StreamManagerCore` with its real registry
loader (`_load_detector`, not a `detector_factory`) against a fresh SQLite MLflow. The same through a
running hub is tests/serving/test_follow_e2e.py.

The versions are what `hub train see` and a bad upload produce:
- v1: the COCO detector (head cut before decode: any frame shape, so cameras run it `rect`);
- v2: an export whose head the hub does not cut (`output_format: decoded`, a fixed square input),
  which is what `hub train see` registered before its export was made static. The HTTP `see`
  replica serves such a version; the stream manager refused it ("rect inputs need a raw-heads
  artifact"), so the camera never left v1 after a promote;
- v3: a broken `model.onnx`: refused, the camera keeps running on what it had.

Every event must name the version that raised it and keep its clean frame (what
`hub events export --reviewed` writes as training data).
"""

from __future__ import annotations

import shutil
import time

import pytest

from serving.streams import StreamManagerCore
from tests.pipelines import synth_video

MODEL = "follow-cars"
CAMERA = "follow"
POLL_S = 0.2


@pytest.fixture(scope="module")
def artifacts(shared_dir, tmp_path_factory):
    """(v1, v2, v3) artifact folders, see the module doc."""
    from hub.errors import ModelLoadError
    from models.detection import artifact as detection_artifact
    from models.detection import prepare_default

    root = tmp_path_factory.mktemp("follow-artifacts")
    prepare_default(shared_dir, root / "raw-heads")

    def unfamiliar_head(_model):
        raise ModelLoadError("an export whose Detect head the hub does not recognise")

    with pytest.MonkeyPatch.context() as mp:  # prepare_artifact's documented fallback: keep the decoded output
        mp.setattr(detection_artifact, "split_yolo_head", unfamiliar_head)
        meta = prepare_default(shared_dir, root / "decoded")
    assert meta["output_format"] == "decoded"
    shutil.copytree(root / "raw-heads", root / "broken")
    (root / "broken" / "model.onnx").write_bytes(b"not an onnx graph")
    return root / "raw-heads", root / "decoded", root / "broken"


def _wait(what: str, probe, limit_s: float = 180.0):
    deadline = time.monotonic() + limit_s
    while not (value := probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def _event_after(core, wall: float, version: str):
    return next((e for e in core.list_events(camera_id=CAMERA, since=wall)
                 if e["created_wall"] >= wall and (e.get("model") or {}).get("version") == version), None)


def _settled(model: dict, version: str, refused: str | None) -> dict | None:
    """The camera's model block once it runs `version` (having refused `refused`); a refusal of any
    other version fails at once rather than after the timeout."""
    assert model["failed_version"] in (None, refused), model["error"]
    return model if (model["version"], model["failed_version"]) == (version, refused) else None


# (action, the alias's target afterwards, the version the camera runs, the version it refused)
MOVES = [
    ("promote 2", "2", "2", None),  # a decoded-head fine-tune: followed (square input), not refused
    ("rollback", "1", "1", None),
    ("promote 3", "3", "1", "3"),  # broken: refused, the camera stays on v1 and says why
]


def test_camera_follows_promote_rollback_and_refuses_a_broken_version(hub_home, shared_dir, artifacts, tmp_path):
    from registry.store import MlflowStore

    store = MlflowStore.from_settings()
    meta = {"capability": "see", "format": "yolo-onnx"}
    assert [store.register(MODEL, folder, metadata=meta) for folder in artifacts] == ["1", "2", "3"]
    store.set_alias(MODEL, "champion", "1")
    data = tmp_path / "data"
    video = data / "videos" / "follow.mp4"
    synth_video.make_video(video, shared_dir)
    core = StreamManagerCore({"model_poll_s": POLL_S, "retention": {"hard_quota": False}}, data_dir=data)
    try:
        core.add_stream({"camera_id": CAMERA, "url": str(video), "loop": True, "realtime": False,
                         "analysis_fps": 4.0, "model": f"models:/{MODEL}@champion",
                         "zones": [{"zone_id": "road", "points": synth_video.ROAD_ZONE, "normalized": True}],
                         "rules": [{"kind": "spill", "zone_id": "road", "min_s": 3.0}]})
        assert core.get_stream(CAMERA)["model"]["version"] == "1"
        _wait("an event from version 1", lambda: _event_after(core, 0.0, "1"))
        for action, target, runs, refused in MOVES:
            moved = time.time()
            if action == "rollback":
                store.rollback(MODEL)
            else:
                store.set_alias(MODEL, "champion", action.split()[1])
            assert store.alias_version(MODEL, "champion") == target
            model = _wait(f"the camera on version {runs} after {action}", lambda v=runs, r=refused: _settled(
                core.get_stream(CAMERA)["model"], v, r))
            assert (model["error"] is None) == (refused is None), model
            if refused:
                assert f"version {refused} failed to load; still on version {runs}" in model["error"]
            event = _wait(f"an event naming version {runs} after {action}", lambda v=runs, t=moved: _event_after(
                core, t, v))
            assert event["model"] == {"name": MODEL, "version": runs}
            assert core.get_snapshot(event["event_id"], clean=True)[:2] == b"\xff\xd8"  # the clean frame is kept
        assert core.get_stream(CAMERA)["state"] in ("live", "over_capacity")
    finally:
        core.close()
