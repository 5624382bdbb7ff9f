"""Camera sources: a video file (once or looped), or an RTSP/HTTP stream decoded by FFmpeg (PyAV).

Each source runs one reader thread that decodes the stream, keeps the camera's analysis rate
(e.g. 5 of 25 fps, chosen by the stream's own timestamps) and hands over only the **latest**
sampled frame: when inference falls behind, older frames are skipped and counted, never queued.
A stream that drops, stalls or cannot be opened is reopened with exponential back-off; its state
(`connecting / live / reconnecting / failed`, plus `ended` for a file read once and `stopped`)
is visible at any time. Video time stays monotonic across loops and reconnects.

>>> src = FrameSource("cam17", SourceConfig(url="rtsp://10.0.0.17/stream1", analysis_fps=5))
>>> src.start()
>>> frame = src.get(timeout_s=1.0)   # Frame(camera_id, frame_id, ts_s, image) or None
>>> src.state, src.stats()
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from hub.backoff import backoff_s
from hub.redact import redact_text
from pipelines.decode import DecodeOptions, NativeFrame, SkipPolicy, host_rgb, to_analysis
from pipelines.nvdec import nvdec_frames, resolve_backend

log = logging.getLogger(__name__)

NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
# Demuxers whose timestamps are invented by FFmpeg (frame count x nominal rate): use arrival time.
_UNTIMED_FORMATS = {"mpjpeg", "mjpeg", "image2pipe", "jpeg_pipe"}


@dataclass(frozen=True, eq=False)  # holds arrays: identity, not value, equality
class Frame:
    """One decoded RGB frame. `ts_s` is the stream's own (monotonic) time, `frame_id` counts the
    frames read from this camera since it was added. Example: `Frame("cam17", 42, 8.4, rgb)`."""

    camera_id: str
    frame_id: int
    ts_s: float
    # HxWx3 uint8 RGB at analysis size (see `DecodeOptions.max_side_px`): a numpy array, or a CUDA
    # tensor when the camera is decoded on NVDEC (use `decode.host_rgb` where host memory is needed)
    image: Any
    wall_s: float = 0.0  # time.time() when decoded (latency, not rules)
    native: NativeFrame | None = None  # the full-size decoded frame, for evidence snapshots

    @property
    def native_hw(self) -> tuple[int, int]:
        """(height, width) of the camera's own frames: the pixels zones and events are in."""
        if self.native is None:
            return self.image.shape[0], self.image.shape[1]
        return self.native.height, self.native.width

    def full_image(self) -> np.ndarray:
        """Full-resolution RGB (an event's snapshot): converted from the native frame on demand."""
        return host_rgb(self.image) if self.native is None else self.native.rgb()


class CameraState(StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    ENDED = "ended"
    STOPPED = "stopped"


@dataclass(frozen=True)
class SourceConfig:
    """How to read one camera.

    `realtime`: deliver a file at its own frame rate like a camera would (None: files yes; a
    `False` file source hands over every sampled frame and waits for the consumer instead, which
    is what offline analysis and tests want). `max_failures`: consecutive failed attempts before
    the state becomes `failed` (None: keep trying forever).
    """

    url: str
    loop: bool = False
    analysis_fps: float | None = 5.0
    realtime: bool | None = None
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    max_failures: int | None = None
    options: dict[str, str] = field(default_factory=dict)  # FFmpeg options, e.g. rtsp_transport=tcp
    decode: DecodeOptions = DecodeOptions()  # analysis size, FFmpeg threads, frame skipping
    # Before every connection (first and each reconnect): the URL to open, or an exception to refuse
    # it. The stream manager checks the outbound policy here, so a DNS answer that changes to a
    # private address after the camera was added is caught on the next reconnect.
    guard: Callable[[str], str] | None = None
    secrets: tuple[str, ...] = ()  # literal credentials to mask in errors and logs
    max_frame_pixels: int = 36_000_000  # a larger frame (8K is 33 Mpx) ends the connection

    def connect_config(self) -> SourceConfig:
        """This config as one connection attempt opens it (the guard applied)."""
        return self if self.guard is None else replace(self, url=self.guard(self.url), guard=None)

    def redact(self, text: str) -> str:
        return redact_text(text, self.secrets)

    @property
    def is_network(self) -> bool:
        return self.url.lower().startswith(NETWORK_SCHEMES)

    def __hash__(self) -> int:
        return hash((self.url, self.loop, self.analysis_fps, tuple(sorted(self.options.items()))))


@dataclass
class SourceStats:
    frames_decoded: int = 0
    frames_sampled: int = 0
    frames_skipped: int = 0  # sampled but replaced by a newer frame before anyone took it
    reconnects: int = 0  # times the stream came back after a drop
    failures: int = 0  # consecutive failed attempts (0 once live)
    last_error: str | None = None
    last_ts_s: float | None = None
    decoder: str = "cpu"  # where frames are decoded now: "cpu" (FFmpeg) or "nvdec" (the GPU's decoder)


@dataclass
class _Connection:
    """Reading state of one connection (one `FrameSource._read`)."""

    stream: Any
    frame_s: float  # nominal frame interval
    untimed: bool  # timestamps invented by FFmpeg: use arrival time
    wall0: float  # monotonic time the connection started
    skip: SkipPolicy
    skip_mode: str = "DEFAULT"
    pts0: float | None = None
    got: bool = False


class FrameSource:
    """A camera reader thread with a one-frame hand-over slot. See the module docstring."""

    def __init__(self, camera_id: str, config: SourceConfig, *, opener: Callable | None = None) -> None:
        self.camera_id = camera_id
        self.config = config
        self._open = opener or _open_av
        self._state = CameraState.CONNECTING
        self._stats = SourceStats()
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._frame_id = 0
        self._ts_base = 0.0  # video-time offset of the current connection
        self._next_due = -np.inf
        self._last_wall = 0.0  # monotonic time of the last decoded frame
        self._was_live = False
        self._looped = False  # the next connection is the same file from its start
        self._rate_scale = 1.0  # share of analysis_fps sampled now (fair degradation)
        realtime = config.realtime
        self._lossless = not config.is_network and realtime is False
        self._realtime = not config.is_network and realtime is not False
        self._nvdec = resolve_backend(config.decode.backend) == "nvdec"  # InvalidInput: nvdec without a GPU

    # -- consumer side -------------------------------------------------------------------------
    @property
    def state(self) -> CameraState:
        return self._state

    def stats(self) -> SourceStats:
        with self._cond:
            return SourceStats(**vars(self._stats) | {"decoder": "nvdec" if self._nvdec else "cpu"})

    def get(self, timeout_s: float = 1.0) -> Frame | None:
        """The latest frame not yet taken, waiting up to `timeout_s`; None if none came."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._slot is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return None
                if self._state in (CameraState.ENDED, CameraState.FAILED):
                    return None
                self._cond.wait(remaining)
            frame, self._slot = self._slot, None
            self._cond.notify_all()
            return frame

    @property
    def finished(self) -> bool:
        """True once nothing more will come (file ended, gave up, or stopped) and the slot is empty."""
        return self._state in (CameraState.ENDED, CameraState.FAILED, CameraState.STOPPED) and self._slot is None

    def start(self) -> FrameSource:
        self._thread = threading.Thread(target=self._run, name=f"source-{self.camera_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._set_state(CameraState.STOPPED)

    def set_rate_scale(self, scale: float) -> None:
        """Sample `scale` x analysis_fps (0.05..1): the stream runner lowers every camera alike
        when the box cannot analyse them all at their full rate."""
        self._rate_scale = min(1.0, max(0.05, float(scale)))

    @property
    def rate_scale(self) -> float:
        return self._rate_scale

    @property
    def lossless(self) -> bool:
        """A file analysed frame by frame (not paced): nothing is skipped, its rate is never lowered."""
        return self._lossless

    # -- reader thread ------------------------------------------------------------------------
    def _set_state(self, state: CameraState) -> None:
        with self._cond:
            if self._state is not CameraState.STOPPED or state is CameraState.STOPPED:
                self._state = state
            self._cond.notify_all()

    def _run(self) -> None:
        cfg = self.config
        first = True
        while not self._stop.is_set():
            if not self._looped:  # looping a file is not a reconnect: the state stays live
                self._set_state(CameraState.CONNECTING if first else CameraState.RECONNECTING)
            got_frames, reason = False, "eof"
            try:
                container = self._open(cfg.connect_config())
            except Exception as exc:  # FFmpeg/OS errors: the boundary of this thread
                reason = cfg.redact(f"open failed: {type(exc).__name__}: {exc}")
            else:
                try:
                    got_frames = self._read(container)
                except Exception as exc:
                    reason = cfg.redact(f"read failed: {type(exc).__name__}: {exc}")
                    self._maybe_leave_nvdec(reason)
                finally:
                    _close_quietly(container)
            if self._stop.is_set():
                break
            if reason == "eof" and got_frames and not cfg.is_network:
                if not cfg.loop:
                    self._set_state(CameraState.ENDED)
                    return
                first, self._looped = False, True
                continue  # loop the file at once; time continues from the last frame
            with self._cond:
                self._stats.failures += 1
                self._stats.last_error = reason if reason != "eof" else "stream ended"
                failures = self._stats.failures
            log.warning("camera %s: %s (attempt %d)", self.camera_id, self._stats.last_error, failures)
            if cfg.max_failures is not None and failures >= cfg.max_failures:
                self._set_state(CameraState.FAILED)
                return
            first, self._looped = False, False
            self._set_state(CameraState.RECONNECTING)
            delay = backoff_s(failures, cfg.backoff_initial_s, cfg.backoff_max_s, jitter=0.2)
            self._stop.wait(delay)
        self._set_state(CameraState.STOPPED)

    def _maybe_leave_nvdec(self, reason: str) -> None:
        """`backend: auto` falls back to the CPU for this camera when NVDEC fails before its first
        frame (a codec profile the hardware lacks, a driver without NVDEC); `nvdec` keeps failing."""
        if self._nvdec and self.config.decode.backend == "auto" and self._stats.frames_decoded == 0:
            log.warning("camera %s: NVDEC failed (%s); decoding on the CPU", self.camera_id, reason)
            self._nvdec = False

    def _read(self, container) -> bool:
        """Decode one connection until it ends; True if it yielded at least one frame."""
        conn = self._connect(container)
        frames = nvdec_frames(container, conn.stream) if self._nvdec else container.decode(conn.stream)
        for av_frame in frames:
            if self._stop.is_set():
                break
            now = time.monotonic()
            ts = self._video_time(conn, av_frame, now)
            if ts is None:
                continue  # a repeated or out-of-order timestamp: keep time strictly increasing
            self._count_decoded(conn, ts, now)
            self._update_skipping(conn, av_frame, ts)
            if not self._due(ts):
                continue
            if self._realtime and self._pace(conn, ts, now):
                break
            self._emit(av_frame, ts)
        return conn.got

    def _connect(self, container) -> _Connection:
        cfg = self.config
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if cfg.decode.threads:
            stream.codec_context.thread_count = cfg.decode.threads
        nominal = float(stream.average_rate) if stream.average_rate else 25.0
        untimed = cfg.is_network and getattr(container.format, "name", "") in _UNTIMED_FORMATS
        # Offline analysis (a lossless file source) keeps every sampled frame exact: no skipping;
        # NVDEC decodes every frame in hardware (FFmpeg's skip_frame does not reach it).
        skip = SkipPolicy(cfg.decode.skip_frames and not self._lossless and not self._nvdec, self._period_s(),
                          1.0 / nominal)
        conn = _Connection(stream, 1.0 / nominal, untimed, time.monotonic(), skip)
        self._set_skip_mode(conn, skip.mode)
        return conn

    def _video_time(self, conn: _Connection, av_frame, now: float) -> float | None:
        """The frame's time on this camera's monotonic clock; None if it does not move time on."""
        t = None if conn.untimed else av_frame.time
        if t is None:
            t = now - conn.wall0
        last = self._stats.last_ts_s  # written by this thread only
        if conn.pts0 is None:
            conn.pts0 = t
            if last is not None:
                # Continue video time after a loop (one frame later) or a reconnect (wall gap).
                gap = conn.frame_s if not self.config.is_network else max(conn.frame_s, now - self._last_wall)
                self._ts_base = last + gap
        ts = self._ts_base + (t - conn.pts0)
        return None if last is not None and ts <= last else ts

    def _count_decoded(self, conn: _Connection, ts: float, now: float) -> None:
        if not conn.got:
            conn.got = True
            with self._cond:
                self._stats.reconnects += 1 if self._was_live and not self._looped else 0
                self._stats.failures = 0
            self._was_live, self._looped = True, False
            self._set_state(CameraState.LIVE)
        self._last_wall = now
        with self._cond:
            self._stats.frames_decoded += 1
            self._stats.last_ts_s = ts

    def _update_skipping(self, conn: _Connection, av_frame, ts: float) -> None:
        conn.skip.set_period(self._period_s())
        self._set_skip_mode(conn, conn.skip.observe(bool(av_frame.key_frame), ts))

    @staticmethod
    def _set_skip_mode(conn: _Connection, mode: str) -> None:
        if mode != conn.skip_mode:
            conn.stream.codec_context.skip_frame = mode
            conn.skip_mode = mode

    def _period_s(self) -> float:
        fps = self.config.analysis_fps
        return 1.0 / (fps * self._rate_scale) if fps else 0.0

    def _due(self, ts: float) -> bool:
        """Is a sample due at video time `ts`? Keeps the analysis rate on the video's own clock."""
        period = self._period_s()
        if period and ts + 1e-6 < self._next_due:
            return False
        self._next_due = self._next_due + period if self._next_due + period > ts else ts + period
        return True

    def _pace(self, conn: _Connection, ts: float, now: float) -> bool:
        """Deliver a file like a live camera: wait until the frame's time; True if stopped meanwhile."""
        ahead = (ts - self._ts_base) - (now - conn.wall0)
        return ahead > 0 and self._stop.wait(ahead)

    def _emit(self, av_frame, ts: float) -> None:
        cfg = self.config
        if av_frame.width * av_frame.height > cfg.max_frame_pixels:
            raise ValueError(f"frame of {av_frame.width}x{av_frame.height} is over the cap of "
                             f"{cfg.max_frame_pixels} pixels")
        image = to_analysis(av_frame, cfg.decode.max_side_px)
        native = NativeFrame(av_frame) if image.shape[:2] != (av_frame.height, av_frame.width) else None
        self._publish(Frame(self.camera_id, self._frame_id, ts, image, wall_s=time.time(), native=native))
        self._frame_id += 1

    def _publish(self, frame: Frame) -> None:
        with self._cond:
            if self._lossless:
                while self._slot is not None and not self._stop.is_set():
                    self._cond.wait(0.5)
            elif self._slot is not None:
                self._stats.frames_skipped += 1  # the consumer is behind: keep only the newest
            self._slot = frame
            self._stats.frames_sampled += 1
            self._cond.notify_all()


def _open_av(config: SourceConfig):
    import av

    if not config.is_network and not Path(config.url).exists():
        raise FileNotFoundError(config.url)
    options = dict(config.options)
    if config.url.lower().startswith(("rtsp://", "rtsps://")):
        options.setdefault("rtsp_transport", "tcp")
    return av.open(config.url, options=options, timeout=(config.open_timeout_s, config.read_timeout_s))


def _close_quietly(container) -> None:
    # Closing a broken connection may raise again; there is nothing left to save.
    with contextlib.suppress(Exception):
        container.close()
