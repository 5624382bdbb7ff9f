"""The stream-manager deployment: owns the camera loop, the detector(s) it batches for, the event
store and webhook delivery. The HTTP routes are in `serving/streams_api.py`.

One replica (cameras are long-lived connections; scale by running more hubs). The detector is
resolved from the registry (`models:/yolov8n-coco@champion` by default, or a camera's own `model`,
e.g. a fine-tuned overhead-car detector), loaded once per distinct reference, and follows its alias
(`pipelines.follow.FollowingDetector`: load beside, warm up, swap; a failed load keeps the old one).

>>> StreamManager.options(name="streams").bind({"include": "configs/streams.yaml"})
>>> await handle.add_stream.remote({"camera_id": "cam17", "url": "rtsp://...", "zones": [...], "rules": [...]})
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ray import serve

from hub.contract import validate_as
from hub.errors import InvalidInput, ModelLoadError
from hub.redact import has_credentials, redact_url, url_secrets
from hub.settings import apply_runtime_env, has_refs, resolve_refs, webhook_signing_key

log = logging.getLogger("ray.serve")
REPO = Path(__file__).resolve().parents[1]


class StreamManagerCore:
    """Everything the deployment does, without Ray (tests drive it in-process).

    `detector_factory(model_ref) -> (detector, info)` replaces the registry lookup in tests.
    Example: `core = StreamManagerCore({"file_roots": ["/videos"]}); core.add_stream({...})`.
    """

    def __init__(self, options: dict | None = None, *, detector_factory=None, data_dir: Path | None = None) -> None:
        from pipelines.durability import HomeLock, Upkeep
        from pipelines.events import EventStore
        from pipelines.stream_config import StreamsConfig
        from pipelines.streams import EventSink, StreamRunner
        from pipelines.webhooks import WebhookSender

        settings = apply_runtime_env()
        config = validate_as(StreamsConfig, _resolve_paths(options or {})).resolved()
        self.config = config
        self.settings = settings
        self.data_dir = Path(data_dir or settings.data_dir)
        # One hub per data folder: a second one would run the cameras and send the webhooks twice.
        self.owner = HomeLock.acquire(self.data_dir)
        quota = config.retention.events.max_mb * 1.25e6 if config.retention.hard_quota else None
        self.store = EventStore.open(self.data_dir, max_db_bytes=quota)
        from pipelines.review import ReviewBook

        self.reviews = ReviewBook(self.store)
        self.outbound = config.outbound.policy()
        self.sender = WebhookSender(self.store, outbound=self.outbound,
                                    default_secret=webhook_signing_key(settings)).start()
        from pipelines.stream_config import webhook_specs

        self._webhooks(webhook_specs(config.webhooks), field="webhooks")
        self.sink = EventSink(self.store, self.sender, [w.url for w in webhook_specs(config.webhooks)],
                              max_episode_s=config.max_episode_s)
        self._detector_factory = detector_factory or self._load_detector
        self._batchers: dict[str, Any] = {}
        self._followers: dict[str, Any] = {}  # ref -> FollowingDetector
        self._registry = None
        self._lock = threading.Lock()
        self.runner = StreamRunner(self._batcher_for, self.sink, inflight=config.batch.inflight_per_camera,
                                   decode=config.decode.options(), capacity=config.capacity.policy())
        self.upkeep = Upkeep(self.store, self.sink.recorder, config.retention).start()
        self._persist_path = self.data_dir / "streams" / "cameras.json"
        self._persist_lock = threading.Lock()  # concurrent add_stream calls write one file at a time
        self._api_cameras: dict[str, dict] = {}
        for spec in config.cameras:
            self._start(spec)
        if config.persist_cameras:
            for raw in self._load_persisted():
                if raw.get("credentials_not_persisted"):
                    log.error("streams: camera %s was added with literal credentials, which are not saved; "
                              "add it again, or give them as ${HUB_CAMERA_...} references", raw.get("camera_id"))
                    continue
                try:
                    self.add_stream(raw, persist=False, replace=True)
                except Exception as exc:  # one bad saved camera must not stop the others
                    log.error("streams: cannot restore camera %s: %s", raw.get("camera_id"), exc)

    # -- detectors and batchers ---------------------------------------------------------------
    def _load_detector(self, ref: str):
        from gpu.device import pick_device
        from models.detection import Detector, DetectorSpec
        from registry.store import MlflowStore

        resolved = MlflowStore.from_settings().resolve(ref)
        try:
            # `rect` saves compute, it is not a requirement: a version whose head is not cut
            # (`output_format: decoded`, fixed square input) is servable, and the HTTP `see`
            # replica serves it, so cameras run it square rather than refusing the version.
            rect = self.config.rect and DetectorSpec.read(resolved.artifact_dir).dynamic_hw
            if self.config.rect and not rect:
                log.warning("streams: %s version %s has a fixed input size; its cameras run it on square "
                            "(letterboxed) frames instead of rect", resolved.name, resolved.version)
            detector = Detector(rect=rect)
            detector.load(resolved.artifact_dir, pick_device(self.config.device))
        except Exception as exc:
            raise ModelLoadError(f"{ref} failed to load for streams: {exc}") from exc
        return detector, {"name": resolved.name, "version": resolved.version, "alias": resolved.alias}

    def _batcher_for(self, model: str | None):
        from gpu.batcher import DynamicBatcher
        from gpu.policy import BatchPolicy
        from pipelines.follow import FollowingDetector
        from pipelines.streams import detect_fn
        from registry.ref import ModelRef

        ref = model or self.config.model
        with self._lock:
            if ref not in self._batchers:
                follows = ModelRef.parse(ref).alias is not None
                detector = FollowingDetector(ref, self._detector_factory, self._alias_version, follows=follows)
                detector.start(self.config.model_poll_s)
                b = self.config.batch
                policy = BatchPolicy(max_batch_size=b.max_batch_size, max_wait_ms=b.max_wait_ms,
                                     max_queue=b.max_queue, max_queue_per_key=b.inflight_per_camera, drop="oldest",
                                     max_age_ms=b.max_age_ms, max_batch_ms=b.max_batch_ms)
                self._batchers[ref] = DynamicBatcher(detect_fn(detector), policy, name=f"streams:{ref}")
                self._followers[ref] = detector
            return self._batchers[ref]

    def _alias_version(self, ref: str) -> str | None:
        from registry.ref import ModelRef
        from registry.store import MlflowStore

        parsed = ModelRef.parse(ref)
        if self._registry is None:
            self._registry = MlflowStore.from_settings()
        return self._registry.alias_version(parsed.name, parsed.alias) if parsed.alias else parsed.version

    def _model_info(self, camera_id: str) -> dict | None:
        """The model a camera runs: name, version, alias, and the error of a refused new version."""
        follower = self._followers.get(self.runner.worker(camera_id).plan.model or self.config.model)
        return None if follower is None else follower.info()

    # -- cameras ------------------------------------------------------------------------------
    def _check_source(self, url: str) -> None:
        if "://" in url:  # a network camera: the outbound policy decides (scheme, resolved address)
            self.outbound.check_camera(_connect_url(url))
            return
        path = Path(url).resolve()
        roots = [self.settings.shared_dir / "data", self.data_dir, *self.config.file_roots]
        if not any(path == r.resolve() or r.resolve() in path.parents for r in roots):
            raise InvalidInput("file sources must lie under the hub's data folders or `file_roots`", field="url")
        if not path.is_file():
            raise InvalidInput(f"no such video file: {url}", field="url")

    def _webhooks(self, specs, *, field: str) -> None:
        """Check receivers against the outbound policy and hand their signing keys to the sender."""
        for spec in specs:
            self.outbound.check_webhook(spec.url, field=field)
            secret = resolve_refs(spec.secret, prefix="HUB_WEBHOOK_", field=field) if spec.secret else None
            self.sender.set_secret(spec.url, secret)

    def _start(self, spec, *, replace: bool = False) -> dict:
        from dataclasses import replace as with_fields

        from pipelines.stream_config import webhook_specs

        spec = spec.model_copy(update={"url": _expand_url(spec.url, self.settings)})
        self._check_source(spec.url)
        self._webhooks(webhook_specs(spec.webhooks), field="webhooks")
        plan = spec.plan()
        source = plan.source
        if "://" in spec.url:  # checked again before every connection: DNS may answer differently later
            source = with_fields(source, guard=self._guard, secrets=url_secrets(_connect_url(spec.url)))
        source = with_fields(source, max_failures=source.max_failures or self.config.max_failures)
        return self.runner.add(with_fields(plan, source=source), replace=replace)

    def _guard(self, url: str) -> str:
        return self.outbound.check_camera(_connect_url(url)).pinned_url()

    def add_stream(self, payload: dict, *, persist: bool = True, replace: bool = False) -> dict:
        from pipelines.stream_config import CameraSpec

        spec = validate_as(CameraSpec, payload)
        stats = self._start(spec, replace=replace)
        if persist and self.config.persist_cameras:
            self._api_cameras[spec.camera_id] = _persistable(spec.model_dump(mode="json"))
            self._save_persisted()
        elif not persist:
            self._api_cameras[spec.camera_id] = _persistable(spec.model_dump(mode="json"))
        return stats

    def remove_stream(self, camera_id: str) -> dict:
        stats = self.runner.remove(camera_id)
        if self._api_cameras.pop(camera_id, None) is not None and self.config.persist_cameras:
            self._save_persisted()
        return stats

    def list_streams(self) -> list[dict]:
        return [{**s, "model": self._model_info(s["camera_id"])} for s in self.runner.list()]

    def get_stream(self, camera_id: str) -> dict:
        out = self.runner.stats(camera_id)
        out["model"] = self._model_info(camera_id)
        return out

    def _load_persisted(self) -> list[dict]:
        try:
            return list(json.loads(self._persist_path.read_text()))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.error("streams: unreadable %s: %s", self._persist_path, exc)
            return []

    def _save_persisted(self) -> None:
        from pipelines.durability import write_json_atomic

        with self._persist_lock:
            write_json_atomic(self._persist_path, list(self._api_cameras.values()))

    # -- events -------------------------------------------------------------------------------
    def list_events(self, camera_id: str | None = None, rule: str | None = None, since: float | None = None,
                    limit: int = 100) -> list[dict]:
        return [e.to_dict() for e in self.store.list_events(camera_id, rule, since, limit)]

    def get_event(self, event_id: str) -> dict:
        return self.store.get(event_id).to_dict()

    def get_snapshot(self, event_id: str, clean: bool = False) -> bytes:
        return self.store.snapshot_bytes(event_id, clean=clean)

    def review_event(self, event_id: str, action: str, note: str | None = None, reviewer: str | None = None) -> dict:
        self.reviews.review(event_id, action, note=note, reviewer=reviewer)
        return self.reviews.event(event_id)

    def thumbnail(self, camera_id: str) -> bytes:
        from hub.errors import NotFound
        from pipelines.review import thumbnail_jpeg

        image = self.runner.worker(camera_id).last_image
        if image is None:
            raise NotFound(f"camera {camera_id!r} has not analysed a frame yet")
        return thumbnail_jpeg(image)

    def list_reviews(self, filters: dict) -> list[dict]:
        """Events with their review; filters: camera_id, rule, since_wall, until_wall, state, limit."""
        return self.reviews.list_events(**filters)

    def feed(self, after_seq: int, camera_id: str | None = None, rule: str | None = None, limit: int = 100) -> list[dict]:
        items = self.store.feed(after_seq, limit)
        return [e.to_dict() for e in items
                if (camera_id is None or e.event.camera_id == camera_id) and (rule is None or e.event.rule == rule)] \
            + ([{"seq": items[-1].seq, "type": "cursor"}] if items else [])

    def dead_letters(self, url: str | None = None, limit: int = 100) -> list[dict]:
        from pipelines.webhooks import DeliveryQueue

        return DeliveryQueue(self.store).dead_letters(url, limit)

    def replay(self, ids: list[int] | None = None, url: str | None = None) -> dict:
        from pipelines.webhooks import DeliveryQueue

        count = DeliveryQueue(self.store).replay(ids=ids, url=url)
        self.sender.wake()
        return {"replayed": count}

    def status(self) -> dict:
        return {"cameras": len(self.runner.list()), "models": {r: f.info() for r, f in self._followers.items()},
                "deliveries": self.store.delivery_counts(), "capacity": self.runner.capacity(),
                "batchers": {ref: vars(b.stats()) for ref, b in self._batchers.items()},
                "storage": {"spill": self.sink.recorder.health(), "retention": self.upkeep.retention.last_run},
                **self.health()}

    def health(self) -> dict:
        """`healthy` is False while events cannot be written (they wait in memory), the disk is
        nearly full, or webhooks cannot be sent; `problems` says which, for `/readyz`."""
        problems = self.upkeep.problems()
        if not self.sender.alive:
            problems.append("webhook sender stopped")
        return {"healthy": not problems, "problems": problems}

    def close(self) -> None:
        """Stop the cameras (in parallel), write what is spilled, stop webhooks (a delivery in
        flight finishes or stays queued in the store), close the store, release the data folder."""
        self.runner.close()
        self.upkeep.stop()
        self.sink.recorder.close()
        self.sender.stop()
        for batcher in self._batchers.values():
            batcher.close(drain=False)
        for follower in self._followers.values():
            follower.close()
        self.store.close()
        self.owner.release()


def _resolve_paths(options: dict) -> dict:
    """Relative paths in the serving config are relative to the repository, not the worker's cwd."""
    out = dict(options)
    if out.get("include"):
        out["include"] = str(REPO / out["include"]) if not Path(out["include"]).is_absolute() else out["include"]
    out["file_roots"] = [str(REPO / p) if not Path(p).is_absolute() else p for p in out.get("file_roots", [])]
    return out


def _connect_url(url: str) -> str:
    """The URL a connection uses: `${HUB_CAMERA_*}` references resolved from the environment."""
    return resolve_refs(url, prefix="HUB_CAMERA_", field="url", url_quote=True)


def _persistable(camera: dict) -> dict:
    """A camera as `cameras.json` keeps it: `${...}` references as given, literal credentials never.

    A URL with a literal user:password is saved redacted and marked, and is not restored (the log
    says why); a literal webhook secret is dropped (the hub-wide key signs instead).
    """
    out = dict(camera)
    url = str(out.get("url", ""))
    if has_credentials(url) and not has_refs(url.split("@", 1)[0]):
        out["url"] = redact_url(url)
        out["credentials_not_persisted"] = True
    hooks = []
    for hook in out.get("webhooks", []):
        if isinstance(hook, dict) and hook.get("secret") and not has_refs(hook["secret"]):
            hook = {**hook, "secret": None}
        hooks.append(hook)
    out["webhooks"] = hooks
    return out


def _expand_url(url: str, settings) -> str:
    """`{shared_dir}` / `{data_dir}` in a file URL, so configs do not hard-code machine paths."""
    return url.replace("{shared_dir}", str(settings.shared_dir)).replace("{data_dir}", str(settings.data_dir))


@serve.deployment(health_check_period_s=10, graceful_shutdown_timeout_s=30)
class StreamManager:
    """Ray Serve face of `StreamManagerCore`; blocking work runs in threads off the event loop."""

    def __init__(self, options: dict | None = None) -> None:
        self.core = StreamManagerCore(options)

    async def add_stream(self, payload: dict) -> dict:
        return await asyncio.to_thread(self.core.add_stream, payload)

    async def list_streams(self) -> list[dict]:
        return self.core.list_streams()

    async def capacity(self) -> dict:
        """Over capacity or not, the common rate scale, analysed frames/s, capacity (pipelines/capacity.py)."""
        return self.core.runner.capacity()

    async def get_stream(self, camera_id: str) -> dict:
        return self.core.get_stream(camera_id)

    async def remove_stream(self, camera_id: str) -> dict:
        return await asyncio.to_thread(self.core.remove_stream, camera_id)

    async def list_events(self, camera_id: str | None = None, rule: str | None = None, since: float | None = None,
                          limit: int = 100) -> list[dict]:
        return await asyncio.to_thread(self.core.list_events, camera_id, rule, since, limit)

    async def get_snapshot(self, event_id: str, clean: bool = False) -> bytes:
        return await asyncio.to_thread(self.core.get_snapshot, event_id, clean)

    async def review_event(self, event_id: str, action: str, note: str | None = None,
                           reviewer: str | None = None) -> dict:
        return await asyncio.to_thread(self.core.review_event, event_id, action, note, reviewer)

    async def thumbnail(self, camera_id: str) -> bytes:
        return await asyncio.to_thread(self.core.thumbnail, camera_id)

    async def list_reviews(self, filters: dict) -> list[dict]:
        return await asyncio.to_thread(self.core.list_reviews, filters)

    async def dead_letters(self, url: str | None = None, limit: int = 100) -> list[dict]:
        return await asyncio.to_thread(self.core.dead_letters, url, limit)

    async def replay(self, ids: list[int] | None = None, url: str | None = None) -> dict:
        return await asyncio.to_thread(self.core.replay, ids, url)

    async def status(self) -> dict:
        return await asyncio.to_thread(self.core.status)

    async def health(self) -> dict:
        return await asyncio.to_thread(self.core.health)

    async def subscribe(self, after_seq: int | None = None, camera_id: str | None = None, rule: str | None = None,
                        poll_s: float = 0.5, heartbeat_s: float = 15.0) -> AsyncIterator[dict]:
        """Events as they are stored (each start and end once), oldest first, then live.
        Call with `handle.options(stream=True).subscribe.remote(...)`; yields `{"type": "heartbeat"}`
        during silence so the HTTP side can keep the connection alive."""
        seq = self.core.store.last_seq() if after_seq is None else int(after_seq)
        quiet_since = time.monotonic()
        while True:
            items = await asyncio.to_thread(self.core.feed, seq, camera_id, rule)
            for item in items:
                seq = max(seq, int(item["seq"]))
                if item.get("type") != "cursor":
                    quiet_since = time.monotonic()
                    yield item
            if not items:
                if time.monotonic() - quiet_since >= heartbeat_s:
                    quiet_since = time.monotonic()
                    yield {"type": "heartbeat", "seq": seq}
                await asyncio.sleep(poll_s)

    def check_health(self) -> None:
        if not self.core.sender.alive:
            raise RuntimeError("webhook sender stopped")

    def __del__(self) -> None:
        # Serve calls this on a graceful stop: cameras stop in parallel, spilled events are written,
        # queued webhooks stay in the store for the next start (well inside the shutdown window).
        core = getattr(self, "core", None)
        if core is not None:
            core.close()
