"""Decoding at the detector's size (pipelines/decode.py): the whole camera loop gives the same
events as with full-size frames, on the e2e test video (the generated road scene with a parked car
and debris, rendered at 720p and 1080p), and evidence snapshots stay full size.

(The other e2e video, parking-lot-overhead.mp4, gives no events with the COCO detector: too few
stable overhead detections, so it cannot show that events are unchanged.)"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gpu.batcher import DynamicBatcher
from gpu.policy import BatchPolicy
from pipelines.decode import DecodeOptions, SkipPolicy, analysis_size, to_analysis
from pipelines.events import EventStore
from pipelines.stream_config import CameraSpec
from pipelines.streams import EventSink, StreamRunner, detect_fn
from tests.pipelines import synth_video

FULL = DecodeOptions()  # native size: what the pipeline did before
SMALL = DecodeOptions(max_side_px=640, threads=1, skip_frames=True)  # the stream manager's default


@pytest.mark.parametrize("size,max_side,expected", [
    ((1920, 1080), 640, (640, 360)), ((1280, 720), 640, (640, 360)), ((768, 432), 640, (640, 360)),
    ((1080, 1920), 640, (360, 640)), ((640, 360), 640, (640, 360)), ((320, 240), 640, (320, 240)),
    ((1280, 720), None, (1280, 720)),
])
def test_analysis_size_fits_the_longest_side_and_never_upscales(size, max_side, expected):
    assert analysis_size(*size, max_side) == expected


# (analysis period s, frame interval s, key frames seen at (s), mode after them)
SKIPS = [
    (0.2, 1 / 30, [], "NONREF"),  # 5 of 30 fps: every other frame is never needed
    (0.05, 1 / 30, [], "DEFAULT"),  # 20 of 30 fps: each frame may be the due one
    (0.2, 1 / 30, [0.0, 8.33], "NONREF"),  # key frames 8 s apart: too rare to analyse only those
    (1.0, 1 / 25, [0.0, 1.0], "NONKEY"),  # 1 fps with a 1 s GOP: key frames suffice
    (1.0, 1 / 25, [0.0, 1.0, 3.0], "NONREF"),  # the GOP grew: back to decoding between key frames
    (0.0, 1 / 25, [0.0, 0.04], "DEFAULT"),  # every frame analysed: no skipping
]


@pytest.mark.parametrize("period,frame_s,keys,mode", SKIPS)
def test_skip_policy_drops_only_frames_the_rate_does_not_need(period, frame_s, keys, mode):
    policy = SkipPolicy(True, period, frame_s)
    for ts in keys:
        policy.observe(True, ts)
    assert policy.observe(False, (keys[-1] if keys else 0.0) + frame_s) == mode
    assert SkipPolicy(False, period, frame_s).observe(True, 0.0) == "DEFAULT"


def test_scaled_conversion_matches_converting_full_size_then_resizing(shared_dir):
    import av

    with av.open(str(shared_dir / "data/video/road-cars.mp4")) as container:
        frame = next(container.decode(video=0))
        small = to_analysis(frame, 640)
        reference = cv2.resize(frame.to_ndarray(format="rgb24"), (640, 360), interpolation=cv2.INTER_AREA)
    assert small.shape == (360, 640, 3) and small.dtype == np.uint8
    assert np.abs(small.astype(int) - reference.astype(int)).mean() < 2.0


@pytest.fixture(scope="module")
def detector(shared_dir, tmp_path_factory):
    from models.detection import Detector, prepare_default

    art = tmp_path_factory.mktemp("yolo")
    prepare_default(shared_dir, art)
    det = Detector(rect=True)
    det.load(art, "cpu")
    return det


def synth_camera(scale: int):
    """The e2e synth video rendered at `scale` x 640x360 (2: 720p, the road video's own pixels; 3: 1080p)."""

    def make(tmp_path_factory, shared_dir) -> tuple[str, dict, tuple[int, int]]:
        video = tmp_path_factory.mktemp("synth") / f"synth-x{scale}.mp4"
        synth_video.make_video(video, shared_dir, scale=scale)
        return str(video), {
            "analysis_fps": 4.0,
            "zones": [{"zone_id": "kerb", "points": synth_video.KERB_ZONE, "normalized": True},
                      {"zone_id": "road", "points": synth_video.ROAD_ZONE, "normalized": True}],
            "rules": [{"kind": "illegal_parking", "zone_id": "kerb", "min_dwell_s": 4.0, "exit_grace_s": 1.5},
                      {"kind": "spill", "zone_id": "road", "min_s": 4.0}],
        }, (synth_video.SIZE[1] * scale, synth_video.SIZE[0] * scale)

    return make


def run_camera(detector, url: str, extra: dict, decode: DecodeOptions, tmp_path) -> tuple[list, list[np.ndarray]]:
    store = EventStore.open(tmp_path)
    batcher = DynamicBatcher(detect_fn(detector), BatchPolicy(max_batch_size=4, max_wait_ms=5, max_queue_per_key=2))
    runner = StreamRunner(lambda model: batcher, EventSink(store), decode=decode)
    try:
        runner.add(CameraSpec.model_validate({"camera_id": "cam", "url": url, "realtime": False, **extra}).plan())
        assert runner.wait_done("cam", timeout_s=600), runner.stats("cam")
        assert runner.stats("cam")["errors"] == 0
    finally:
        runner.close()
        batcher.close()
    events = sorted((e.event for e in store.list_events(camera_id="cam", limit=1000)), key=lambda e: e.started_ts)
    snaps = [cv2.imdecode(np.frombuffer(store.snapshot_bytes(e.event_id), np.uint8), cv2.IMREAD_COLOR) for e in events]
    store.close()
    return events, snaps


def iou(a, b) -> float:
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = np.clip(rb - lt, 0, None).prod()
    return float(inter / ((a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter))


@pytest.fixture(scope="module")
def road_720p(detector, shared_dir, tmp_path_factory):
    """The 720p synth camera and its run with the stream manager's default decoding (shared by the
    comparisons below). 1080p (scale 3) passes too; CI time."""
    url, extra, native_hw = synth_camera(2)(tmp_path_factory, shared_dir)
    small, small_snaps = run_camera(detector, url, extra, SMALL, tmp_path_factory.mktemp("small"))
    return url, extra, native_hw, small, small_snaps


def assert_same_events(reference, ref_snaps, other, other_snaps, period_s: float, native_hw) -> None:
    assert reference, "the video must give events for the comparison to mean something"
    assert [(e.rule, e.zone_id) for e in other] == [(e.rule, e.zone_id) for e in reference]
    for a, b in zip(reference, other, strict=True):
        assert b.started_ts == pytest.approx(a.started_ts, abs=period_s + 1e-6), (a, b)
        assert b.fired_ts == pytest.approx(a.fired_ts, abs=period_s + 1e-6), (a, b)
        assert (a.ended_ts is None) == (b.ended_ts is None), (a, b)
        assert iou(np.array(a.bbox), np.array(b.bbox)) >= 0.8, (a.bbox, b.bbox)  # native pixels both
    for a, b in zip(ref_snaps, other_snaps, strict=True):
        assert a.shape[:2] == b.shape[:2] == native_hw  # evidence stays full resolution
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 3.0  # the same frame (boxes drawn differ)


def test_reduced_size_decoding_keeps_events_and_full_size_snapshots(road_720p, detector, tmp_path):
    url, extra, native_hw, small, small_snaps = road_720p
    full, full_snaps = run_camera(detector, url, extra, FULL, tmp_path / "full")
    assert_same_events(full, full_snaps, small, small_snaps, 1.0 / extra["analysis_fps"], native_hw)


def _cpu_device_frames(container, stream, *, gpu_id: int = 0):
    """Stand-in for NVDEC on a box without a GPU: FFmpeg's frames as `DeviceFrame`s (torch tensors
    on the CPU device). Everything after the hardware call runs as on a CUDA box."""
    import torch

    from pipelines.nvdec import DeviceFrame

    for f in container.decode(stream):
        yield DeviceFrame(torch.from_numpy(f.to_ndarray(format="rgb24")), f.time, bool(f.key_frame))


def test_frames_held_as_tensors_give_the_same_events_and_snapshots(road_720p, detector, tmp_path, monkeypatch):
    """The NVDEC path after the decoder (pipelines/nvdec.py): analysis resize on the frame's device,
    the detector's collator, tracker, both rules (spill's work copy), full-size snapshots."""
    from pipelines import sources

    url, extra, native_hw, small, small_snaps = road_720p
    monkeypatch.setattr(sources, "resolve_backend", lambda backend: "nvdec")
    monkeypatch.setattr(sources, "nvdec_frames", _cpu_device_frames)
    dev, dev_snaps = run_camera(detector, url, extra, SMALL, tmp_path / "device")
    assert_same_events(small, small_snaps, dev, dev_snaps, 1.0 / extra["analysis_fps"], native_hw)
