"""What runs cameras in one process: the detectors (one per model reference, following its
registry alias), their batchers, and the `StreamRunner` of the cameras placed here.

The stream manager runs one `CameraHost` in its own process when `streams.shards` is 0 (a single
box), or one per shard actor (`serving/shards.py`: one per GPU, across the nodes of a Ray
cluster). Events leave through the `EventSink` it is given: the manager's store, or a shard's
outbox that the manager drains.

>>> host = CameraHost(config, settings, sink)
>>> host.start(CameraSpec.model_validate({...}))    # the camera's stats
>>> host.list(); host.remove("cam17"); host.close()
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace as with_fields
from pathlib import Path
from typing import Any

from hub.errors import InvalidInput, ModelLoadError, NotFound
from hub.redact import url_secrets
from hub.settings import resolve_refs

log = logging.getLogger("ray.serve")


class CameraHost:
    """Cameras, detectors and batchers of one process.

    `detector_factory(model_ref) -> (detector, info)` replaces the registry lookup in tests.
    """

    def __init__(self, config, settings, sink, *, detector_factory=None, data_dir: Path | None = None,
                 placement: dict | None = None) -> None:
        from pipelines.streams import StreamRunner

        self.config = config
        self.settings = settings
        self.data_dir = Path(data_dir or settings.data_dir)
        self.outbound = config.outbound.policy()
        self.placement = dict(placement or {})  # `replica` and `node` in each camera's row (in-process)
        self._detector_factory = detector_factory or self._load_detector
        self._batchers: dict[str, Any] = {}
        self._followers: dict[str, Any] = {}  # ref -> FollowingDetector
        self._registry = None
        self._lock = threading.Lock()
        self.runner = StreamRunner(self._batcher_for, sink, inflight=config.batch.inflight_per_camera,
                                   decode=config.decode.options(), capacity=config.capacity.policy())

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
    def check_source(self, url: str) -> None:
        if "://" in url:  # a network camera: the outbound policy decides (scheme, resolved address)
            self.outbound.check_camera(connect_url(url))
            return
        path = Path(url).resolve()
        roots = [self.settings.shared_dir / "data", self.data_dir, *self.config.file_roots]
        if not any(path == r.resolve() or r.resolve() in path.parents for r in roots):
            raise InvalidInput("file sources must lie under the hub's data folders or `file_roots`", field="url")
        if not path.is_file():
            raise InvalidInput(f"no such video file: {url}", field="url")

    def start(self, spec, *, replace: bool = False) -> dict:
        """Run a camera here (its URL already expanded); the camera's stats."""
        self.check_source(spec.url)
        plan = spec.plan()
        source = plan.source
        if "://" in spec.url:  # checked again before every connection: DNS may answer differently later
            source = with_fields(source, guard=self._guard, secrets=url_secrets(connect_url(spec.url)))
        source = with_fields(source, max_failures=source.max_failures or self.config.max_failures)
        return self.runner.add(with_fields(plan, source=source), replace=replace)

    def _guard(self, url: str) -> str:
        return self.outbound.check_camera(connect_url(url)).pinned_url()

    def remove(self, camera_id: str) -> dict:
        return self.runner.remove(camera_id)

    def list(self) -> list[dict]:
        return [{**s, "model": self._model_info(s["camera_id"]), **self.placement} for s in self.runner.list()]

    def get(self, camera_id: str) -> dict:
        out = self.runner.stats(camera_id)
        out["model"] = self._model_info(camera_id)
        return out | self.placement

    def thumbnail(self, camera_id: str) -> bytes:
        from pipelines.review import thumbnail_jpeg

        image = self.runner.worker(camera_id).last_image
        if image is None:
            raise NotFound(f"camera {camera_id!r} has not analysed a frame yet")
        return thumbnail_jpeg(image)

    def capacity(self) -> dict:
        return self.runner.capacity()

    def status(self) -> dict:
        return {"cameras": self.runner.camera_count(), "models": {r: f.info() for r, f in self._followers.items()},
                "capacity": self.runner.capacity(),
                "batchers": {ref: vars(b.stats()) for ref, b in self._batchers.items()}}

    def close(self) -> None:
        """Stop the cameras (in parallel), then the batchers and the detectors' alias polling."""
        self.runner.close()
        for batcher in self._batchers.values():
            batcher.close(drain=False)
        for follower in self._followers.values():
            follower.close()


def connect_url(url: str) -> str:
    """The URL a connection uses: `${HUB_CAMERA_*}` references resolved from the environment."""
    return resolve_refs(url, prefix="HUB_CAMERA_", field="url", url_quote=True)
