"""Camera sources: video time, analysis rate, latest-frame hand-over, and reconnect with back-off
against a real local MJPEG-over-HTTP camera that is stopped and started during the test."""

from __future__ import annotations

import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from hub.backoff import backoff_s
from pipelines.sources import CameraState, FrameSource, SourceConfig


def write_video(path: Path, n_frames: int, fps: int, size=(160, 96)) -> Path:
    """A small real H.264 file whose frame k is filled with grey level k (so frames are identifiable)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10", "preset": "ultrafast"}
        for k in range(n_frames):
            img = np.full((size[1], size[0], 3), (k * 7) % 250, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def drain(src: FrameSource, limit_s: float = 30.0) -> list:
    frames, deadline = [], time.monotonic() + limit_s
    while time.monotonic() < deadline:
        frame = src.get(timeout_s=0.2)
        if frame is not None:
            frames.append(frame)
        elif src.finished:
            return frames
    raise AssertionError(f"source still {src.state} after {limit_s} s")


def wait_state(src: FrameSource, states: set[CameraState], limit_s: float = 20.0, consume: bool = True) -> None:
    deadline = time.monotonic() + limit_s
    while src.state not in states:
        assert time.monotonic() < deadline, f"state {src.state}, waited for {states}: {src.stats()}"
        if consume:
            src.get(timeout_s=0.05)
        else:
            time.sleep(0.05)


# (video fps, frames, analysis fps, expected spacing of analysed frames in video seconds)
RATES = [(10, 30, None, 0.1), (10, 30, 5.0, 0.2), (10, 30, 2.5, 0.4), (25, 50, 5.0, 0.2)]


@pytest.mark.parametrize("fps,n,analysis_fps,spacing", RATES)
def test_file_once_keeps_video_time_and_analysis_rate(tmp_path, fps, n, analysis_fps, spacing):
    video = write_video(tmp_path / "v.mp4", n, fps)
    src = FrameSource("cam", SourceConfig(url=str(video), analysis_fps=analysis_fps, realtime=False)).start()
    frames = drain(src)
    assert src.state is CameraState.ENDED
    ts = np.array([f.ts_s for f in frames])
    assert ts[0] == pytest.approx(0.0, abs=1e-6)
    assert np.allclose(np.diff(ts), spacing, atol=1e-3)
    assert len(frames) == int(np.ceil(n / fps / spacing - 1e-9))
    assert [f.frame_id for f in frames] == list(range(len(frames)))
    # the analysed frame is the one at that video time (grey level = 7 * source index)
    k = np.round(ts * fps).astype(int)
    assert np.allclose([f.image[0, 0, 0] for f in frames], (k * 7) % 250, atol=3)
    assert src.stats().frames_decoded == n


def test_file_loop_time_keeps_increasing(tmp_path):
    video = write_video(tmp_path / "v.mp4", 10, 10)  # 1 s long
    src = FrameSource("cam", SourceConfig(url=str(video), loop=True, analysis_fps=5.0, realtime=False)).start()
    frames = [src.get(timeout_s=5.0) for _ in range(14)]  # ~2.8 s of video: two loops and more
    src.stop()
    ts = np.array([f.ts_s for f in frames])
    assert np.all(np.diff(ts) > 0)
    assert ts[-1] > 2.0
    assert src.stats().reconnects == 0 and src.state is CameraState.STOPPED


def test_realtime_source_hands_over_only_the_latest_frame(tmp_path):
    video = write_video(tmp_path / "v.mp4", 40, 20)  # 2 s at 20 fps, delivered in real time
    src = FrameSource("cam", SourceConfig(url=str(video), analysis_fps=None)).start()
    time.sleep(1.0)  # a consumer that fell behind by a second
    frame = src.get(timeout_s=1.0)
    stats = src.stats()
    assert stats.frames_skipped >= 5  # older frames were replaced, not queued
    assert frame.frame_id == stats.frames_sampled - 1 or frame.frame_id >= stats.frames_sampled - 2
    src.stop()


@pytest.mark.parametrize("failures,expected", [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (10, 30.0)])
def test_backoff_doubles_and_is_capped(failures, expected):
    assert backoff_s(failures, 0.5, 30.0) == expected


def test_missing_file_retries_with_backoff_then_fails(tmp_path):
    cfg = SourceConfig(url=str(tmp_path / "nope.mp4"), max_failures=3, backoff_initial_s=0.05, backoff_max_s=0.1)
    src = FrameSource("cam", cfg).start()
    wait_state(src, {CameraState.FAILED})
    stats = src.stats()
    assert stats.failures == 3 and "FileNotFoundError" in stats.last_error
    assert src.get(timeout_s=0.1) is None


class MjpegCamera:
    """A live MJPEG-over-HTTP camera on 127.0.0.1 that can be switched off and on (same port)."""

    def __init__(self) -> None:
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._on = threading.Event()
        self.frozen = threading.Event()  # connections stay open but no frame comes: a stalled camera
        self.sent = 0

    def _handler(self):
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while camera._on.is_set():
                        if camera.frozen.is_set():
                            time.sleep(0.05)
                            continue
                        img = np.full((72, 96, 3), (camera.sent * 9) % 250, np.uint8)
                        buf = io.BytesIO()
                        Image.fromarray(img).save(buf, format="JPEG")
                        data = buf.getvalue()
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data))
                        self.wfile.write(data + b"\r\n")
                        camera.sent += 1
                        time.sleep(0.04)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        return Handler

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._on.set()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._on.clear()  # ends the open streams: the client sees the connection close
        self._server.shutdown()
        self._server.server_close()


@pytest.mark.parametrize("failure", ["server goes away", "stream stalls"])
def test_http_camera_that_drops_reconnects_by_itself(failure):
    camera = MjpegCamera()
    camera.start()
    cfg = SourceConfig(url=f"http://127.0.0.1:{camera.port}/video", analysis_fps=10.0, open_timeout_s=1.0,
                       read_timeout_s=1.0, backoff_initial_s=0.1, backoff_max_s=0.4)
    src = FrameSource("cam-http", cfg).start()
    try:
        wait_state(src, {CameraState.LIVE})
        before = [src.get(timeout_s=2.0) for _ in range(3)]
        if failure == "server goes away":
            camera.stop()
        else:
            camera.frozen.set()
        wait_state(src, {CameraState.RECONNECTING})
        time.sleep(0.5)  # a few failed attempts while the camera is off or silent
        assert src.stats().failures >= 1
        if failure == "server goes away":
            camera.start()  # same port
        else:
            camera.frozen.clear()
        wait_state(src, {CameraState.LIVE})
        after = [src.get(timeout_s=2.0) for _ in range(3)]
        stats = src.stats()
        assert stats.reconnects >= 1 and stats.failures == 0
        ts = [f.ts_s for f in before + after]
        assert all(b > a for a, b in zip(ts, ts[1:], strict=False))  # video time never goes back
        assert after[0].ts_s - before[-1].ts_s >= 0.5  # the outage shows as a gap in time
    finally:
        src.stop()
        camera.stop()
