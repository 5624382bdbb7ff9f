"""Zones (point-in-polygon, pixels and normalised) and the per-camera tracker with class mapping."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from hub.errors import InvalidInput
from pipelines.track import CameraTracker, TrackerConfig
from pipelines.zones import ClassMapping, Zone

L_SHAPE = [(0, 0), (100, 0), (100, 40), (40, 40), (40, 100), (0, 100)]  # concave

# (zone, point, frame w, h, inside?)
ZONE_CASES = [
    (Zone("sq", [(10, 10), (110, 10), (110, 60), (10, 60)]), (50, 30), 640, 360, True),
    (Zone("sq", [(10, 10), (110, 10), (110, 60), (10, 60)]), (150, 30), 640, 360, False),
    (Zone("L", L_SHAPE), (20, 80), 640, 360, True),
    (Zone("L", L_SHAPE), (80, 80), 640, 360, False),  # in the notch of the concave polygon
    (Zone("n", [(0.5, 0.5), (1, 0.5), (1, 1), (0.5, 1)], normalized=True), (600, 300), 640, 360, True),
    (Zone("n", [(0.5, 0.5), (1, 0.5), (1, 1), (0.5, 1)], normalized=True), (600, 300), 1280, 720, False),
]


@pytest.mark.parametrize("zone,point,w,h,inside", ZONE_CASES)
def test_zone_contains(zone, point, w, h, inside):
    assert zone.contains(np.array([point], float), width=w, height=h).tolist() == [inside]


@pytest.mark.parametrize("points,normalized", [([(0, 0), (1, 1)], False), ([(0, 0), (2, 0), (0, 1)], True)])
def test_bad_zones_are_refused(points, normalized):
    with pytest.raises(InvalidInput):
        Zone("bad", points, normalized=normalized)


def test_tracker_keeps_ids_on_moving_boxes_and_starts_afresh_when_time_goes_back():
    tracker = CameraTracker(TrackerConfig(frame_rate_hz=5.0), ClassMapping(keep=frozenset({"car"})))
    ids = []
    for k in range(10):
        xyxy = [[100 + 8 * k, 100, 180 + 8 * k, 150], [400, 200 - 5 * k, 470, 260 - 5 * k], [10, 10, 30, 60]]
        out = tracker.update(xyxy, [0.9, 0.8, 0.9], ["car", "car", "person"], ts_s=k * 0.2, width=640, height=360)
        ids.append(sorted(out.track_id.tolist()))
        assert set(out.class_name.tolist()) <= {"car"}  # the person is not kept
    assert ids[0] == []  # unconfirmed on the first frame
    assert all(i == ids[1] and len(i) == 2 for i in ids[1:])  # the same two ids throughout
    out = tracker.update([[100, 100, 180, 150]], [0.9], ["car"], ts_s=0.0, width=640, height=360)
    assert len(out) == 0  # a fresh tracker after video time jumped back


def test_overhead_camera_maps_cell_phone_to_car_on_the_real_video(shared_dir, tmp_path):
    """The shared overhead parking-lot video: COCO calls the car a `cell phone`; the mapping fixes it."""
    from models.detection import Detector, prepare_default

    prepare_default(shared_dir, tmp_path)
    detector = Detector(rect=True, warmup=False)
    detector.load(tmp_path, "cpu")
    with av.open(str(Path(shared_dir) / "data/video/parking-lot-overhead.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(video=0)) if i in (74, 75, 76)]
    raw = detector.detect_arrays(frames, min_score=0.1)
    assert any("cell phone" in d.class_name for d in raw)
    tracker = CameraTracker(TrackerConfig(frame_rate_hz=12.5),
                            ClassMapping(rename={"cell phone": "car", "suitcase": "car"}, keep=frozenset({"car"})))
    outs = [tracker.update_detections(d, ts_s=i * 0.08, width=768, height=432) for i, d in enumerate(raw)]
    assert len(outs[-1]) >= 1 and set(outs[-1].class_name.tolist()) == {"car"}
