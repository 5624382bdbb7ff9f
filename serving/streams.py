"""The stream-manager deployment: owns the event store, webhook delivery, reviews and the camera
list. The HTTP routes are in `serving/streams_api.py`.

One replica. Cameras run in its own process (`streams.shards: 0`, one box: `serving/camera_host.py`)
or on shard actors spread over a Ray cluster and re-homed when one dies (`shards: N` or `auto`, one
per GPU: `serving/shards.py`). A camera's detector is resolved from the registry
(`models:/yolov8n-coco@champion` by default, or the camera's own `model`) and follows its alias.

>>> StreamManager.options(name="streams").bind({"include": "configs/streams.yaml"})
>>> await handle.add_stream.remote({"camera_id": "cam17", "url": "rtsp://...", "zones": [...], "rules": [...]})
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

from ray import serve

from hub.contract import validate_as
from hub.redact import has_credentials, redact_url
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
        from pipelines.streams import EventSink
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
        self.cameras = self._camera_hosts(detector_factory)
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

    def _camera_hosts(self, detector_factory):
        """Cameras in this process (`shards: 0`), or spread over shard actors (serving/shards.py)."""
        from serving.camera_host import CameraHost

        count = _shard_count(self.config.shards)
        if count == 0:
            return CameraHost(self.config, self.settings, self.sink, detector_factory=detector_factory,
                              data_dir=self.data_dir, placement={"replica": "manager", "node": socket.gethostname()})
        from serving.shards import ShardPool

        gpus = self.config.shard_gpus if ray_gpus() else 0.0
        # The resolved config (an `include`'s webhooks merged in); the cameras are placed one by one.
        shard_options = self.config.model_dump(mode="json", exclude={"cameras", "include"})
        # What a shard's process must see as this one does: settings, and `${HUB_CAMERA_*}` credentials.
        env = {**self.settings.env_for_workers(), **{k: v for k, v in os.environ.items() if k.startswith("HUB_CAMERA_")}}
        return ShardPool(shard_options, count, self._record_shard_event, self.store.open_events,
                         actor_options={"num_cpus": self.config.shard_cpus, "num_gpus": gpus,
                                        "resources": dict(self.config.shard_resources)}, env=env, data_dir=self.data_dir)

    def _record_shard_event(self, item) -> None:
        self.sink.recorder.record(item.event, webhooks=item.webhooks, end_reason=item.end_reason,
                                  snapshot_jpeg=item.snapshot_jpeg, frame_jpeg=item.frame_jpeg)

    def _webhooks(self, specs, *, field: str) -> None:
        """Check receivers against the outbound policy and hand their signing keys to the sender."""
        for spec in specs:
            self.outbound.check_webhook(spec.url, field=field)
            secret = resolve_refs(spec.secret, prefix="HUB_WEBHOOK_", field=field) if spec.secret else None
            self.sender.set_secret(spec.url, secret)

    def _start(self, spec, *, replace: bool = False) -> dict:
        from pipelines.stream_config import webhook_specs

        spec = spec.model_copy(update={"url": _expand_url(spec.url, self.settings)})
        self._webhooks(webhook_specs(spec.webhooks), field="webhooks")
        return self.cameras.start(spec, replace=replace)

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
        stats = self.cameras.remove(camera_id)
        if self._api_cameras.pop(camera_id, None) is not None and self.config.persist_cameras:
            self._save_persisted()
        return stats

    def list_streams(self) -> list[dict]:
        return self.cameras.list()

    def get_stream(self, camera_id: str) -> dict:
        return self.cameras.get(camera_id)

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
        return self.cameras.thumbnail(camera_id)

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
        return {**self.cameras.status(), "deliveries": self.store.delivery_counts(),
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
        self.cameras.close()
        self.upkeep.stop()
        self.sink.recorder.close()
        self.sender.stop()
        self.store.close()
        self.owner.release()


def _resolve_paths(options: dict) -> dict:
    """Relative paths in the serving config are relative to the repository, not the worker's cwd."""
    out = dict(options)
    if out.get("include"):
        out["include"] = str(REPO / out["include"]) if not Path(out["include"]).is_absolute() else out["include"]
    out["file_roots"] = [str(REPO / p) if not Path(p).is_absolute() else p for p in out.get("file_roots", [])]
    return out


def _shard_count(shards: int | str) -> int:
    """`auto`: one shard per GPU of the Ray cluster this runs in (0 without one, or outside Ray)."""
    return int(ray_gpus()) if shards == "auto" else int(shards)


def ray_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0)) if ray.is_initialized() else 0.0


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
        return self.core.cameras.capacity()

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
