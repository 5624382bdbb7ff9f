"""Fair degradation and admission (pipelines/capacity.py): the governor's arithmetic, and the
whole runner with a batch function that can serve fewer frames than the cameras ask for."""

from __future__ import annotations

import time

import numpy as np
import pytest

from gpu.batcher import DynamicBatcher
from gpu.policy import BatchPolicy
from hub.errors import Overloaded
from pipelines.capacity import CapacityGovernor, CapacityPolicy, Counts
from pipelines.decode import DecodeOptions
from pipelines.events import EventStore
from pipelines.stream_config import CameraSpec
from pipelines.streams import EventSink, StreamRunner
from tests.pipelines.test_sources import write_video

# windows of (sampled, lost, analysed) added per camera over 2 s, demand 20 frames/s -> scale after each
WINDOWS = [
    ([(20, 0, 20), (20, 0, 20)], 20.0, [1.0]),  # all analysed: stays at full rate
    ([(20, 4, 16), (20, 4, 16)], 20.0, [0.95 * 16 / 20]),  # a fifth lost: both sample what the box did
    ([(20, 4, 16), (20, 4, 16)], 20.0, [0.76, 0.76 * CapacityPolicy().probe_step]),  # then calm: back up
    ([(20, 20, 0)], 10.0, [0.5]),  # nothing analysed (a stall): at most halved per window
    ([(10, 1, 9)], 5.0, [1.0]),  # one camera, one frame lost in a window: jitter, not over capacity
    ([(10, 2, 8)], 5.0, [0.95 * 4 / 5]),  # two lost: over capacity
]


@pytest.mark.parametrize("windows,demand,expected", WINDOWS)
def test_governor_scales_every_camera_to_what_the_box_analysed(windows, demand, expected):
    gov = CapacityGovernor(CapacityPolicy())
    totals = {f"cam{i}": Counts(0, 0, 0) for i in range(len(windows))}
    gov.step(totals, demand, 0.0)
    scales = []
    for k, _ in enumerate(expected):
        if k == 0:
            totals = {c: Counts(t.sampled + s, t.lost + lo, t.analysed + a)
                      for (c, t), (s, lo, a) in zip(totals.items(), windows, strict=True)}
        else:  # a calm window: everything sampled was analysed
            totals = {c: Counts(t.sampled + 10, t.lost, t.analysed + 10) for c, t in totals.items()}
        scales.append(gov.step(totals, demand, 2.0 * (k + 1)))
    assert scales == pytest.approx(expected)
    assert gov.over_capacity == (scales[-1] < 1.0)


@pytest.mark.parametrize("admission,capacity,demand,extra,outcome", [
    ("refuse", 20.0, 15.0, 5.0, None),  # exactly fits
    ("refuse", 20.0, 15.0, 10.0, Overloaded),
    ("warn", 20.0, 15.0, 10.0, "over capacity"),
    ("accept", 20.0, 15.0, 10.0, None),
    ("refuse", None, 500.0, 10.0, None),  # capacity never measured nor configured: nothing to refuse on
])
def test_admission_policy(admission, capacity, demand, extra, outcome):
    gov = CapacityGovernor(CapacityPolicy(admission=admission, capacity_fps=capacity))
    if outcome is Overloaded:
        with pytest.raises(Overloaded):
            gov.admit(demand, extra)
    elif outcome is None:
        assert gov.admit(demand, extra) is None
    else:
        assert outcome in gov.admit(demand, extra)


class Detections:
    """What a detector returns for a frame with nothing in it (the columns the worker reads)."""

    xyxy = np.zeros((0, 4), np.float32)
    score = np.zeros(0, np.float32)
    class_name: list[str] = []


def slow_batch(frames: list[np.ndarray]) -> list[Detections]:
    time.sleep(0.05 * len(frames))  # a detector that serves 20 frames/s at most
    return [Detections() for _ in frames]


def test_oversubscribed_cameras_degrade_fairly_and_say_so(tmp_path):
    video = write_video(tmp_path / "v.mp4", 100, 25)  # 4 s at 25 fps, looped and paced like a camera
    store = EventStore.open(tmp_path)
    batcher = DynamicBatcher(slow_batch, BatchPolicy(max_batch_size=1, max_wait_ms=1, max_queue_per_key=1))
    policy = CapacityPolicy(interval_s=0.5, admission="refuse")
    runner = StreamRunner(lambda model: batcher, EventSink(store), inflight=1, capacity=policy,
                          decode=DecodeOptions(threads=1))
    try:
        for c in range(4):  # 4 x 10 frames/s asked of a 20 frames/s detector
            runner.add(CameraSpec.model_validate({"camera_id": f"cam{c}", "url": str(video), "loop": True,
                                                  "analysis_fps": 10.0}).plan())
        deadline = time.monotonic() + 60
        while not runner.governor.over_capacity or runner.governor.learned_fps is None:
            assert time.monotonic() < deadline, runner.capacity()
            time.sleep(0.2)
        time.sleep(3.0)  # a few windows at the lowered rate
        streams = runner.list()
        with pytest.raises(Overloaded):  # the box is full: a fifth camera is refused
            runner.add(CameraSpec.model_validate({"camera_id": "cam4", "url": str(video), "loop": True}).plan())
    finally:
        runner.close()
        batcher.close(drain=False)
        store.close()
    assert {s["state"] for s in streams} == {"over_capacity"}
    scales = {s["rate_scale"] for s in streams}
    assert len(scales) == 1 and 0.05 <= scales.pop() < 1.0  # one scale: every camera alike
    analysed = [s["frames_analysed"] for s in streams]
    assert min(analysed) >= 0.5 * np.mean(analysed), analysed  # shared fairly
