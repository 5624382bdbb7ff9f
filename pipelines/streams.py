"""The multi-camera loop: every camera's frames go through one `DynamicBatcher` (per detector
model) to the detector, then the camera's own tracker, rules and the event sink.

Each camera has a reader thread (`FrameSource`) and a worker thread; the worker keeps at most
`inflight` frames of its camera in the batcher and handles results in order. A camera that stalls
blocks only its own threads; the batcher's per-camera bound drops that camera's oldest frame,
never blocking a producer.

>>> runner = StreamRunner(batcher_for=lambda model: batcher, sink=EventSink(store))
>>> runner.add(CameraSpec.model_validate(camera_yaml).plan())
>>> runner.stats("cam17")      # {"state": "live", "fps": 4.9, "frames_dropped": 0, ...}
>>> runner.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from dataclasses import replace as with_fields
from typing import TYPE_CHECKING

import numpy as np

from gpu.batcher import Dropped, DynamicBatcher
from hub.errors import InvalidInput, NotFound
from hub.redact import redact_url
from pipelines import rules
from pipelines.capacity import CapacityGovernor, CapacityPolicy, Counts
from pipelines.decode import DecodeOptions
from pipelines.episodes import EpisodeLedger
from pipelines.events import EventStore, StoredEvent
from pipelines.rules.base import Event
from pipelines.sources import CameraState, Frame, FrameSource
from pipelines.spill import SpillingRecorder
from pipelines.stream_config import CameraPlan
from pipelines.track import CameraTracker
from pipelines.webhooks import WebhookSender

if TYPE_CHECKING:  # the detector's package loads torch; the columns need only the type
    from models.detection.detections import Detections

log = logging.getLogger(__name__)


class EventSink:
    """Where events go: the durable store first (with snapshot), then webhooks from the store.

    Example: `sink = EventSink(EventStore.open(), WebhookSender(store).start(), webhooks=[url])`.
    """

    def __init__(self, store: EventStore, sender: WebhookSender | None = None, webhooks: Sequence[str] = (), *,
                 max_episode_s: float | None = None) -> None:
        self.store = store
        self.max_episode_s = max_episode_s  # an episode open longer ends as `expired`
        self.sender = sender
        self.webhooks = tuple(webhooks)
        self.listeners: list[Callable[[StoredEvent], None]] = []
        # A failing disk never loses an event: it waits in memory and is written when the store can.
        self.recorder = SpillingRecorder(store, on_stored=self._stored)

    def emit(self, event: Event, frame: Frame | None, webhooks: Sequence[str] = (),
             end_reason: str | None = None) -> StoredEvent | None:
        """Store the event (None: spilled, stored later); webhooks and listeners follow the store."""
        urls = list(dict.fromkeys([*self.webhooks, *webhooks]))
        # Only a started event keeps a snapshot: the full-size frame is converted for it alone.
        image = frame.full_image() if frame is not None and event.phase == "started" else None
        return self.recorder.record(event, image, webhooks=urls, end_reason=end_reason)

    def _stored(self, stored: StoredEvent) -> None:
        if self.sender is not None:
            self.sender.wake()
        for listener in list(self.listeners):
            listener(stored)


@dataclass
class _Counters:
    frames_analysed: int = 0
    frames_dropped: int = 0  # dropped by the batcher's per-camera bound
    errors: int = 0
    events: int = 0
    last_error: str | None = None
    last_latency_ms: float | None = None


class CameraWorker:
    """One camera's reader + worker threads, tracker and rule states."""

    def __init__(self, plan: CameraPlan, batcher: DynamicBatcher, sink: EventSink, *, inflight: int = 2,
                 result_timeout_s: float = 30.0, source: FrameSource | None = None) -> None:
        self.plan = plan
        self.camera_id = plan.camera_id
        self.batcher = batcher
        self.sink = sink
        self.inflight = max(1, inflight)
        self.result_timeout_s = result_timeout_s
        self.source = source or FrameSource(plan.camera_id, plan.source)
        self.tracker = CameraTracker(plan.tracker, plan.mapping)
        self.states = [rules.new_state(rule, plan.camera_id) for rule in plan.rules]
        # Between the rules and the sink: end reasons, and episodes continued across a restart.
        self.ledger = EpisodeLedger(plan.camera_id, plan.rules, sink.store, max_episode_s=sink.max_episode_s)
        self.counters = _Counters()
        self.last_image: np.ndarray | None = None
        self._times: deque[float] = deque(maxlen=32)  # wall times of recent analysed frames (fps)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._end_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.added_wall = time.time()

    def start(self) -> CameraWorker:
        self.source.start()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.camera_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._end_lock:  # after this the worker never ends episodes itself: the caller names the reason
            self._stop.set()
        self.source.stop(timeout_s)
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def done(self) -> bool:
        """The source finished (file read once, or gave up) and every frame was handled."""
        return self._thread is not None and not self._thread.is_alive()

    def _run(self) -> None:
        pending: deque[tuple[Frame, Future]] = deque()
        while not self._stop.is_set():
            if len(pending) < self.inflight:
                frame = self.source.get(timeout_s=0.0 if pending else 0.5)
                if frame is not None:
                    pending.append((frame, self.batcher.submit(self.camera_id, frame.image)))
                    continue
                if not pending:
                    if self.source.finished:
                        with self._end_lock:  # a stopped source is also finished: that is not the stream's end
                            if not self._stop.is_set():
                                self.end_episodes("stream_ended")
                        return
                    continue
            frame, future = pending.popleft()
            try:
                detections = future.result(timeout=self.result_timeout_s)
            except Dropped:
                with self._lock:
                    self.counters.frames_dropped += 1
                continue
            except (FutureTimeout, Exception) as exc:  # one bad batch must not end the camera
                with self._lock:
                    self.counters.errors += 1
                    self.counters.last_error = f"{type(exc).__name__}: {exc}"
                continue
            try:
                self.handle(frame, detections)
            except Exception as exc:
                log.exception("camera %s: frame %d failed", self.camera_id, frame.frame_id)
                with self._lock:
                    self.counters.errors += 1
                    self.counters.last_error = f"{type(exc).__name__}: {exc}"

    def handle(self, frame: Frame, detections: Detections) -> list[Event]:
        """Track, apply every rule, emit events; runs on this camera's worker thread only."""
        h, w = frame.native_hw  # the camera's own pixels: zones, motion limits and events use them
        xyxy, scores, names = detections.xyxy, detections.score, detections.class_name
        small_h, small_w = frame.image.shape[:2]
        if (small_h, small_w) != (h, w):  # detected on the smaller analysis copy of the frame
            xyxy = np.asarray(xyxy, dtype=np.float32) * np.array([w / small_w, h / small_h] * 2, dtype=np.float32)
        tracked = self.tracker.update(xyxy, scores, names, ts_s=frame.ts_s, width=w, height=h)
        events: list[Event] = []
        for rule, state in zip(self.plan.rules, self.states, strict=True):
            events.extend(rules.update(rule, state, tracked, frame.ts_s, image=frame.image))
        model = getattr(detections, "model", None)
        if model is not None:  # the registered version that saw this frame (detectors follow their alias)
            events = [e.with_model(model) for e in events]
        for event, end_reason in self.ledger.process(events, frame.ts_s):
            self.sink.emit(event, frame, self.plan.webhooks, end_reason=end_reason)
        now = time.time()
        with self._lock:
            self.last_image = frame.image  # the UI's thumbnail (a reference: no copy per frame)
            self.counters.frames_analysed += 1
            self.counters.events += len(events)
            self.counters.last_latency_ms = (now - frame.wall_s) * 1000.0 if frame.wall_s else None
            self._times.append(now)
        return events

    def end_episodes(self, reason: str) -> None:
        """End what is open (`camera_removed`, `stream_ended`); after the worker thread stopped."""
        for event, end_reason in self.ledger.close(reason):
            self.sink.emit(event, None, self.plan.webhooks, end_reason=end_reason)

    def _state(self) -> str:
        state = self.source.state
        if state is CameraState.LIVE and self.source.rate_scale < 1.0:
            return "over_capacity"  # live, but sampled below analysis_fps: the box is full
        return state.value

    def counts(self) -> Counts:
        src = self.source.stats()
        with self._lock:
            return Counts(src.frames_sampled, src.frames_skipped + self.counters.frames_dropped,
                          self.counters.frames_analysed)

    @property
    def governed(self) -> bool:
        """Live and paced (a camera, or a file played like one): its rate may be lowered."""
        return self.source.state is CameraState.LIVE and not self.source.lossless

    def stats(self) -> dict:
        src = self.source.stats()
        with self._lock:
            c = self.counters
            times = list(self._times)
            fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
            if times and time.time() - times[-1] > 5.0:
                fps = 0.0  # nothing analysed lately: do not show a stale rate
            return {
                "camera_id": self.camera_id, "url": _redact(self.plan.source.url), "state": self._state(),
                "fps": round(fps, 2), "analysis_fps": self.plan.source.analysis_fps,
                "rate_scale": round(self.source.rate_scale, 3),
                "frames_decoded": src.frames_decoded, "decoder": src.decoder, "frames_analysed": c.frames_analysed,
                "frames_skipped": src.frames_skipped, "frames_dropped": c.frames_dropped,
                "reconnects": src.reconnects, "errors": c.errors, "events": c.events,
                "last_ts_s": src.last_ts_s, "latency_ms": None if c.last_latency_ms is None else round(c.last_latency_ms, 1),
                "last_error": self.plan.source.redact(c.last_error or src.last_error or "") or None, "added_wall": self.added_wall,
                "zones": [r.zone.zone_id for r in self.plan.rules],
                "rules": [type(r).__name__ for r in self.plan.rules],
            }


_redact = redact_url  # credentials in rtsp://user:password@host URLs are never shown


class StreamRunner:
    """All cameras of a process. `batcher_for(model_ref_or_None)` gives the shared batcher of a model.

    Example: `runner = StreamRunner(lambda m: batcher, EventSink(store)); runner.add(plan)`.
    """

    def __init__(self, batcher_for: Callable[[str | None], DynamicBatcher], sink: EventSink, *,
                 inflight: int = 2, max_cameras: int = 256, decode: DecodeOptions | None = None,
                 capacity: CapacityPolicy | None = None) -> None:
        self.batcher_for = batcher_for
        self.sink = sink
        self.inflight = inflight
        self.max_cameras = max_cameras
        self.decode = decode  # None: each camera's own `SourceConfig.decode`
        self.governor = CapacityGovernor(capacity or CapacityPolicy())
        self._workers: dict[str, CameraWorker] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._governor_thread: threading.Thread | None = None

    def add(self, plan: CameraPlan, *, replace: bool = False, source: FrameSource | None = None) -> dict:
        with self._lock:
            old = self._workers.get(plan.camera_id)
            if old is not None and not replace:
                raise InvalidInput(f"camera {plan.camera_id!r} exists; remove it first", field="camera_id")
            if old is None and len(self._workers) >= self.max_cameras:
                raise InvalidInput(f"this hub runs at most {self.max_cameras} cameras")
            demand = sum(w.plan.source.analysis_fps or 0.0 for w in self._workers.values() if not w.source.lossless)
        warning = None if old is not None else self.governor.admit(demand, plan.source.analysis_fps or 0.0)
        if old is not None:
            old.stop()
        if self.decode is not None and source is None:
            plan = with_fields(plan, source=with_fields(plan.source, decode=self.decode))
        worker = CameraWorker(plan, self.batcher_for(plan.model), self.sink, inflight=self.inflight, source=source)
        with self._lock:
            self._workers[plan.camera_id] = worker
            if self._governor_thread is None:
                self._governor_thread = threading.Thread(target=self._govern, name="streams-governor", daemon=True)
                self._governor_thread.start()
        worker.start()
        return worker.stats() | ({"warning": warning} if warning else {})

    def _govern(self) -> None:
        """Every `interval_s`: one rate scale for all live paced cameras (see pipelines/capacity.py)."""
        while not self._closed.wait(self.governor.policy.interval_s):
            with self._lock:
                live = [w for w in self._workers.values() if w.governed]
            demand = sum(w.plan.source.analysis_fps or 0.0 for w in live)
            scale = self.governor.step({w.camera_id: w.counts() for w in live}, demand, time.monotonic())
            for worker in live:
                worker.source.set_rate_scale(scale)

    def capacity(self) -> dict:
        """The governor's view: rate scale, analysed frames/s now, capacity (configured or learned)."""
        g = self.governor
        return {"over_capacity": g.over_capacity, "rate_scale": round(g.scale, 3), "analysed_fps": round(g.last_fps, 2),
                "capacity_fps": None if g.capacity_fps is None else round(g.capacity_fps, 1),
                "admission": g.policy.admission}

    def remove(self, camera_id: str) -> dict:
        with self._lock:
            worker = self._workers.pop(camera_id, None)
        if worker is None:
            raise NotFound(f"no camera {camera_id!r}")
        worker.stop()
        worker.end_episodes("camera_removed")
        return worker.stats()

    def worker(self, camera_id: str) -> CameraWorker:
        with self._lock:
            worker = self._workers.get(camera_id)
        if worker is None:
            raise NotFound(f"no camera {camera_id!r}")
        return worker

    def stats(self, camera_id: str) -> dict:
        return self.worker(camera_id).stats()

    def list(self) -> list[dict]:
        with self._lock:
            workers = list(self._workers.values())
        return [w.stats() for w in workers]

    def camera_count(self) -> int:
        with self._lock:
            return len(self._workers)

    def wait_done(self, camera_id: str, timeout_s: float) -> bool:
        """Wait until a finite source (a file read once) has been fully analysed."""
        worker = self.worker(camera_id)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if worker.done:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        # In parallel: the whole hub must stop within Ray Serve's graceful window, not 5 s per camera.
        stoppers = [threading.Thread(target=w.stop, name=f"stop-{w.camera_id}") for w in workers]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()


def detect_fn(detector, min_score: float = 0.1) -> Callable[[list[np.ndarray]], list]:
    """The batch function handed to a `DynamicBatcher`: one detector call for frames of many cameras."""
    return lambda frames: detector.detect_arrays(frames, min_score=min_score)


__all__ = ["CameraState", "CameraWorker", "EventSink", "StreamRunner", "detect_fn"]
