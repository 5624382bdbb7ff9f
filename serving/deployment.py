"""One generic Ray Serve deployment serves any capability of the catalogue.

It resolves its model reference (`models:/<name>@champion`) when configured, batches requests
with `serving.batching.Batcher` (continuous batching: a batch is taken only by a free worker, and
decoding one batch overlaps inference of the other), and follows alias moves without a restart:
a poller notices the alias points elsewhere, loads the new version beside the old one, warms it
up and swaps; a version that fails to load or warm up is refused and the old one keeps serving.

>>> CapabilityDeployment.options(name="see").bind("see")  # user_config carries CapabilityConfig
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from ray import serve

# the one device picker of the project (issue 18)
from gpu.device import pick_device
from hub.contract import ModelInfo, run_batch, unwrap, validate_as
from hub.errors import HubError, ModelNotFound, NotReady, RegistryUnavailable
from hub.settings import apply_runtime_env
from serving.batching import Batcher, BatchSettings
from serving.lifecycle import LoadAttempts, RegistryState, is_transient, load_and_warm

log = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class Loaded:
    capability: Any
    info: ModelInfo
    loaded_at_s: float


class CapabilityServer:
    """Loads, serves and hot-swaps one capability (Ray-free, so it is testable in-process)."""

    def __init__(self, capability: str, kind: str | None = None) -> None:
        """`capability`: the deployment's name (routes, metrics); `kind`: the catalogue capability it
        runs, when that differs (a second `speak` deployment named `speak-zh`)."""
        from models.catalogue import get_entry
        from registry.store import MlflowStore

        apply_runtime_env()
        self.name = capability
        self.entry = get_entry(kind or capability)
        self.cls = self.entry.load_class()
        self.store = MlflowStore.from_settings()
        self.active: Loaded | None = None
        self.config = None
        self.last_error: str | None = None
        self.attempts = LoadAttempts()  # transient failures wait and retry; deterministic ones refuse
        self.registry = RegistryState()
        self._swap_lock = threading.Lock()

    def load_version(self, ref: str) -> Loaded:
        """Resolve and load `ref` beside whatever is serving; warm it up; return it unswapped."""
        from registry.ref import ModelRef

        parsed = ModelRef.parse(ref)
        resolved = self.store.resolve(parsed)
        info = ModelInfo(name=resolved.name, version=resolved.version, alias=parsed.alias)
        device = pick_device(self.config.device if self.config else "auto")
        capability = load_and_warm(self.cls, resolved.artifact_dir, device, info)
        if resolved.from_cache:
            self.registry.down(resolved.registry_error or "unreachable")
        self.registry.started_from_cache = resolved.from_cache
        return Loaded(capability, info, time.time())

    def configure(self, config) -> None:
        """Apply a CapabilityConfig; load the model if the reference or its target changed. A
        transient failure of the first load is retried with back-off before it is reported."""
        self.config = config
        for attempt in range(1, self.attempts.policy.start_attempts + 1):
            try:
                self.refresh(force=self.active is None or self.active_ref() != config.model)
                return
            except Exception as exc:
                if self.active is not None or not is_transient(exc) or attempt == self.attempts.policy.start_attempts:
                    raise
                delay = self.attempts.backoff_s(attempt)
                log.warning("capability %s: first load failed (%s); retrying in %.0f s", self.name, exc, delay)
                time.sleep(delay)

    def active_ref(self) -> str | None:
        if self.active is None:
            return None
        info = self.active.info
        return f"models:/{info.name}@{info.alias}" if info.alias else f"models:/{info.name}/{info.version}"

    def refresh(self, force: bool = False) -> bool:
        """Swap to the version the configured reference names now. Returns True on a swap."""
        from registry.ref import ModelRef

        ref = ModelRef.parse(self.config.model)
        with self._swap_lock:
            target = self._target(ref)
            if target is None:
                return False  # the registry is away: keep serving what is loaded
            current = self.active.info if self.active else None
            if not force and current and current.name == ref.name and current.version == target:
                self.last_error = None  # e.g. a refused version was rolled back: nothing is wrong now
                return False
            key = f"{ref.name}/{target}"
            if not force and self.attempts.blocked(key):
                return False  # refused for good, or waiting for its next try
            try:
                loaded = self.load_version(str(ref) if ref.version else f"models:/{ref.name}/{target}")
            except Exception as exc:
                verdict = self.attempts.failed(key, exc)
                self.last_error = f"{exc} ({verdict})"
                log.error("capability %s: %s version %s failed to load (%s), keeping %s: %s", self.name, ref.name,
                          target, verdict, current.version if current else None, exc)
                if self.active is None:
                    raise
                return False
            self.attempts.succeeded(key)
            previous = self.active
            self.active = Loaded(loaded.capability, loaded.info.model_copy(update={"alias": ref.alias}),
                                 loaded.loaded_at_s)
            if previous is not None and hasattr(previous.capability, "close"):
                # batches already running on the old version finish first; then free its resources
                timer = threading.Timer(self.config.timeout_s, previous.capability.close)
                timer.daemon = True
                timer.start()
            self.last_error = None
            log.info("capability %s now serves %s version %s", self.name, ref.name, target)
            return True

    def _target(self, ref) -> str | None:
        """The version to serve: the reference's own, or the alias's target in the registry. With
        the registry away: None while something is serving, else the alias's last known version
        from the local cache (RegistryUnavailable if there is none)."""
        if ref.version:
            return ref.version
        try:
            target = self.store.alias_version(ref.name, ref.alias)
        except RegistryUnavailable as exc:
            self.registry.down(exc.message)
            if self.active is not None:
                return None
            target = self.store.last_known(ref.name, ref.alias)
            if target is None:
                raise RegistryUnavailable(f"{exc.message}; and no earlier version of {ref} is cached here") from exc
            log.warning("capability %s: registry unreachable, starting from cached %s version %s", self.name,
                        ref, target)
            return target
        self.registry.up()
        if target is None:
            raise ModelNotFound(f"{ref} does not exist in the model registry")
        return target

    def parse(self, payload: Any) -> Any:
        if isinstance(payload, self.cls.request_type):
            return payload
        return validate_as(self.cls.request_type, payload)

    def run(self, requests: list) -> list:
        active = self.active
        if active is None:
            raise NotReady(f"capability {self.name} has no model loaded")
        return run_batch(active.capability, requests, active.info)

    def status(self) -> dict:
        info = self.active.info.model_dump() if self.active else None
        return {"capability": self.name, "ready": self.active is not None, "model": info,
                "model_ref": self.config.model if self.config else None,
                "loaded_at_s": self.active.loaded_at_s if self.active else None, "last_error": self.last_error,
                "registry": self.registry.to_dict(), "refused_versions": sorted(self.attempts.refused)}


# A batch whose images hold this many pixels is followed by malloc_trim: the decoded frames of a
# 49 MP upload are ~150 MB each, and glibc keeps freed pages in its arenas unless asked.
TRIM_AFTER_PIXELS = 16_000_000
# Payloads above this size are validated off the event loop (base64 of a large image takes ms).
PARSE_INLINE_BYTES = 64 * 1024


def payload_bytes(payload: Any) -> int:
    """Rough size of a request payload (its top-level str/bytes fields), to decide where to parse it."""
    if isinstance(payload, dict):
        return sum(len(v) for v in payload.values() if isinstance(v, str | bytes | bytearray))
    return 0


def image_pixels(request: Any) -> int:
    """Pixels of an image request from its header alone (0 when it has none or is not an image:
    the capability reports a bad image as that item's error)."""
    from hub.media import image_size

    data = getattr(request, "image", None)
    if not isinstance(data, bytes | bytearray):
        return 0
    try:
        width, height = image_size(bytes(data))
    except HubError:
        return 0
    return width * height


def lower_cpu_priority(nice: int) -> None:
    """Raise this process's nice value to `nice` (never lower it). Linux keeps nice per thread, so
    every thread that runs now is reniced; threads started later inherit it from their creator."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # no procfs: the calling thread at least
        threads = [0]
    for tid in threads:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:  # the thread ended meanwhile
            continue


def rss_mib() -> float | None:
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


@serve.deployment
class CapabilityDeployment:
    """Ray Serve wrapper: a continuous batcher + a background poller that follows the alias."""

    def __init__(self, capability: str, kind: str | None = None) -> None:
        from serving import metrics

        self.server = CapabilityServer(capability, kind)
        self.metrics = metrics.CapabilityMetrics(capability)
        self.batcher: Batcher | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    async def reconfigure(self, user_config: dict) -> None:
        from serving.config import CapabilityConfig

        config = CapabilityConfig.model_validate(user_config)
        lower_cpu_priority(config.cpu_nice)  # before loading: the model's thread pools inherit it
        # raises at start-up for an unknown model: a clear error; loading runs off the event loop
        await asyncio.to_thread(self.server.configure, config)
        settings = BatchSettings(
            max_batch_size=config.batch.max_batch_size, max_wait_ms=config.batch.max_wait_ms,
            workers=config.batch.workers, max_queue=config.max_ongoing_requests,
            max_batch_pixels=config.batch.max_batch_pixels, trim_after_pixels=TRIM_AFTER_PIXELS)
        if self.batcher is None:
            images = getattr(self.server.cls, "upload_field", None) == "image"
            self.batcher = Batcher(self.server.run, settings, pixels=image_pixels if images else None,
                                   on_batch=self.metrics.observe_batch)
        self.batcher.configure(settings)
        if self._poller is None:
            self._poller = threading.Thread(target=self._poll, name=f"alias-poll-{self.server.name}", daemon=True)
            self._poller.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.server.config.poll_s):
            try:
                self.server.refresh()
            except Exception as exc:  # registry unreachable: keep serving, try again later
                self.server.last_error = f"registry poll failed: {exc}"
                log.warning("capability %s: %s", self.server.name, self.server.last_error)

    async def predict(self, payload: Any, timeout_s: float | None = None) -> Any:
        """One request (a dict from JSON or a request model); returns the response model.
        `timeout_s`: the caller's deadline (default: the capability's `timeout_s`)."""
        started = time.perf_counter()
        status = "ok"
        try:
            if self.batcher is None:
                raise NotReady(f"capability {self.server.name} is not configured yet")
            if payload_bytes(payload) > PARSE_INLINE_BYTES:
                request = await asyncio.to_thread(self.server.parse, payload)
            else:
                request = self.server.parse(payload)
            self.metrics.observe_stage("parse", (time.perf_counter() - started) * 1000.0)
            return unwrap(await self.batcher.submit(request, timeout_s or self.server.config.timeout_s))
        except HubError as exc:
            status = exc.code
            raise
        except asyncio.CancelledError:
            status = "cancelled"  # the ingress gave up (its timeout): the item left the queue
            raise
        except Exception:
            status = "error"
            raise
        finally:
            self.metrics.observe_request(status, (time.perf_counter() - started) * 1000.0)
            self.metrics.observe_queue(self.batcher.stats().queued if self.batcher else 0)

    async def predict_json(self, payload: Any, as_file: bool = False, timeout_s: float | None = None) -> Any:
        response = await self.predict(payload, timeout_s)
        started = time.perf_counter()
        if as_file and hasattr(response, "as_file"):
            out = response.as_file()
        else:
            out = response.model_dump(mode="json")
        self.metrics.observe_stage("serialise", (time.perf_counter() - started) * 1000.0)
        return out

    async def extra(self, method: str, payload: Any) -> Any:
        routes = getattr(self.server.cls, "extra_routes", {})
        spec = next((s for s in routes.values() if s[1] == method), None)
        if spec is None or self.server.active is None:
            raise NotReady(f"{self.server.name} cannot serve {method} now")
        request = validate_as(spec[0], payload)
        result = await asyncio.to_thread(getattr(self.server.active.capability, method), request)
        return result.model_dump(mode="json") if hasattr(result, "model_dump") else result

    async def status(self) -> dict:
        out = self.server.status()
        if self.batcher is not None:
            out["batching"] = self.batcher.stats().to_dict()
        out["rss_mib"] = round(rss_mib() or 0.0, 1)
        return out

    async def schemas(self) -> dict:
        cls = self.server.cls
        return {"request": cls.request_type.model_json_schema(), "response": cls.response_type.model_json_schema(),
                "upload_field": getattr(cls, "upload_field", None),
                "extra_routes": {k: v[1] for k, v in getattr(cls, "extra_routes", {}).items()}}

    def check_health(self) -> None:
        if self.server.active is None:
            raise RuntimeError(f"capability {self.server.name} has no model loaded")

    def __del__(self) -> None:
        self._stop.set()
