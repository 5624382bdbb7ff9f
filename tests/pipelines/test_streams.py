"""The whole camera loop on CPU with the real detector: a generated video (real frames, a real car
crop parked on the hard shoulder, a real object lying on the carriageway) must give exactly one
parking and one spill event at the right video time, while a stalled camera in the same loop
neither blocks it nor gets analysed."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from gpu.batcher import DynamicBatcher
from gpu.policy import BatchPolicy
from pipelines.events import EventStore
from pipelines.stream_config import CameraSpec
from pipelines.streams import EventSink, StreamRunner, detect_fn
from tests.pipelines import synth_video


@pytest.fixture(scope="module")
def detector(shared_dir, tmp_path_factory):
    from models.detection import Detector, prepare_default

    art = tmp_path_factory.mktemp("yolo")
    prepare_default(shared_dir, art)
    det = Detector(rect=True)
    det.load(art, "cpu")
    return det


@pytest.fixture(scope="module")
def synth(shared_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "synth.mp4"
    return path, synth_video.make_video(path, shared_dir)


def camera_spec(camera_id: str, url: str, **extra) -> CameraSpec:
    return CameraSpec.model_validate({
        "camera_id": camera_id, "url": url, "analysis_fps": 4.0,
        "zones": [{"zone_id": "kerb", "points": synth_video.KERB_ZONE, "normalized": True},
                  {"zone_id": "road", "points": synth_video.ROAD_ZONE, "normalized": True}],
        "rules": [{"kind": "illegal_parking", "zone_id": "kerb", "min_dwell_s": 4.0, "exit_grace_s": 1.5},
                  {"kind": "spill", "zone_id": "road", "min_s": 4.0}],
        **extra,
    })


class SilentCamera:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte: a camera that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.sock.close()


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_generated_video_gives_one_parking_and_one_spill_event_and_a_stalled_camera_blocks_nothing(
        detector, synth, tmp_path):
    video, truth = synth
    store = EventStore.open(tmp_path)
    batcher = DynamicBatcher(detect_fn(detector), BatchPolicy(max_batch_size=8, max_wait_ms=10, max_queue_per_key=2))
    runner = StreamRunner(lambda model: batcher, EventSink(store))
    silent = SilentCamera()
    try:
        runner.add(camera_spec("stalled", f"http://127.0.0.1:{silent.port}/cam", max_failures=None).plan())
        runner.add(camera_spec("synth", str(video), realtime=False).plan())
        assert runner.wait_done("synth", timeout_s=240), runner.stats("synth")
        stats = runner.stats("synth")
        stalled = runner.stats("stalled")
    finally:
        runner.close()
        batcher.close()
        silent.close()

    assert stats["state"] == "ended" and stats["errors"] == 0
    assert stats["frames_analysed"] == int(truth.duration_s * 4.0)  # every sampled frame was analysed
    assert stalled["state"] in ("connecting", "reconnecting") and stalled["frames_analysed"] == 0

    events = store.list_events(camera_id="synth")
    by_rule = {rule: [e for e in events if e.event.rule == rule] for rule in ("illegal_parking", "spill")}
    expectations = [  # (rule, truth interval, truth box, must have ended by the end of the video)
        ("illegal_parking", truth.car_s, truth.car_box, True),
        ("spill", truth.debris_s, truth.debris_box, False),
    ]
    for rule, (t_in, t_out), box, ends in expectations:
        assert len(by_rule[rule]) == 1, [e.to_dict() for e in events]
        ev = by_rule[rule][0].event
        assert ev.started_ts == pytest.approx(t_in, abs=1.0), ev
        assert ev.fired_ts == pytest.approx(ev.started_ts + 4.0, abs=0.3)
        assert overlaps(ev.bbox, box), (ev.bbox, box)
        if ends:
            assert ev.ended_ts == pytest.approx(t_out, abs=1.0)
        assert store.snapshot_bytes(ev.event_id)[:2] == b"\xff\xd8"  # a JPEG
    assert store.list_events(camera_id="stalled") == []
    store.close()


def test_camera_added_twice_is_refused_and_remove_stops_it(detector, synth, tmp_path):
    from hub.errors import InvalidInput, NotFound

    video, _ = synth
    store = EventStore.open(tmp_path)
    batcher = DynamicBatcher(detect_fn(detector), BatchPolicy(max_batch_size=4, max_wait_ms=5, max_queue_per_key=2))
    runner = StreamRunner(lambda model: batcher, EventSink(store))
    try:
        plan = camera_spec("cam", str(video), loop=True).plan()  # realtime: paced like a camera
        runner.add(plan)
        with pytest.raises(InvalidInput):
            runner.add(plan)
        deadline = time.monotonic() + 60
        while runner.stats("cam")["frames_analysed"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert runner.stats("cam")["state"] in ("live", "over_capacity")  # over_capacity: live, rate lowered
        removed = runner.remove("cam")
        assert removed["state"] == "stopped"
        with pytest.raises(NotFound):
            runner.stats("cam")
    finally:
        runner.close()
        batcher.close()
        store.close()


@pytest.mark.parametrize("path", ["configs/streams.yaml"])
def test_example_config_is_valid_and_plans_every_camera(path):
    from pathlib import Path

    from pipelines.stream_config import StreamsConfig

    config = StreamsConfig.load(Path(__file__).resolve().parents[2] / path)
    plans = [camera.plan() for camera in config.cameras]
    assert plans and all(plan.rules for plan in plans)
    overhead = next(p for p in plans if p.mapping.rename)
    assert overhead.mapping.map_names(["cell phone", "suitcase", "car"]) == ["car", "car", "car"]


@pytest.mark.parametrize("url,shown", [
    ("rtsp://admin:secret@10.0.0.17:554/s1", "rtsp://***@10.0.0.17:554/s1"),
    ("rtsp://10.0.0.17/s1", "rtsp://10.0.0.17/s1"),
    ("/videos/a@b.mp4", "/videos/a@b.mp4"),
])
def test_camera_credentials_are_not_shown(url, shown):
    from pipelines.streams import _redact

    assert _redact(url) == shown
