"""The stream manager restarted in-process (no Ray): a camera added over the API comes back from
cameras.json, the car it saw parked before the restart is still one event, and removing the
camera ends it as `camera_removed`. The same through a running hub is tests/serving/test_durability_e2e.py."""

from __future__ import annotations

import pytest

from serving.streams import StreamManagerCore
from tests.pipelines import synth_video
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def detector(shared_dir, tmp_path_factory):
    from models.detection import Detector, prepare_default

    art = tmp_path_factory.mktemp("yolo")
    prepare_default(shared_dir, art)
    det = Detector(rect=True)
    det.load(art, "cpu")
    return det


def camera(url: str) -> dict:
    return {"camera_id": "kerbside", "url": url, "analysis_fps": 4.0, "realtime": True,
            "zones": [{"zone_id": "kerb", "points": synth_video.KERB_ZONE, "normalized": True}],
            "rules": [{"kind": "illegal_parking", "zone_id": "kerb", "min_dwell_s": 4.0, "exit_grace_s": 1.5}]}

def test_restored_camera_continues_the_open_episode(hub_home, shared_dir, detector, tmp_path):
    data = tmp_path / "data"
    video = data / "videos" / "parked.mp4"
    synth_video.make_video(video, shared_dir, duration_s=40.0, car_s=(3.0, 38.0), debris_s=(39.0, 39.5))

    def factory(ref):
        return detector, {"name": "yolov8n-coco", "version": "1", "alias": "champion"}

    options = {"retention": {"hard_quota": False}}
    core = StreamManagerCore(options, detector_factory=factory, data_dir=data)
    try:
        core.add_stream(camera(str(video)))
        [first] = wait_for(lambda: core.list_events(camera_id="kerbside"))
    finally:
        core.close()  # the hub stops while the car is parked
    assert first["ended_ts"] is None

    core = StreamManagerCore(options, detector_factory=factory, data_dir=data)  # same data folder: lock free again
    try:
        # restored from cameras.json, run in the manager's process (streams.shards: 0)
        assert [(s["camera_id"], s["replica"]) for s in core.list_streams()] == [("kerbside", "manager")]
        wait_for(lambda: (core.get_stream("kerbside")["last_ts_s"] or 0) > 16.0)  # past the dwell + slack
        assert [e["event_id"] for e in core.list_events(camera_id="kerbside")] == [first["event_id"]]
        core.remove_stream("kerbside")
        [ended] = core.list_events(camera_id="kerbside")
    finally:
        core.close()
    assert (ended["event_id"], ended["end_reason"]) == (first["event_id"], "camera_removed")
