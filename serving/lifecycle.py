"""The model lifecycle of a replica without single points of failure.

- **Transient or deterministic.** A load that failed because something around the model was
  missing for a moment (the registry, the network, memory, a busy disk) is retried with
  exponential back-off. Only a deterministic failure — the artifact fails validation, cannot be
  loaded, or does not answer its own sample request — refuses that version on this replica
  (until the alias moves or the replica restarts), so replicas do not drift apart on a hiccup.
- **Registry outages.** `RegistryState` records whether the registry answered the last time it
  was asked; `/v1/models` shows it, with whether the model was started from the local cache.
- **One way to load.** `load_and_warm` is what a replica does and what `hub models register` does
  before registering: load the artifact, answer the sample request.

>>> attempts = LoadAttempts(LoadPolicy(backoff_initial_s=2))
>>> attempts.failed("yolov8n-coco/4", TimeoutError("download"))   # "retry in 2 s"
>>> attempts.blocked("yolov8n-coco/4")                             # True until then
"""

from __future__ import annotations

import contextlib
import errno
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.backoff import backoff_s
from hub.contract import ModelInfo, run_batch, unwrap
from hub.errors import ModelLoadError, RegistryUnavailable

# OS errors that describe the machine at this moment, not the artifact.
_TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EIO, errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM,
                               errno.EBUSY, errno.ETIMEDOUT, errno.ECONNREFUSED, errno.ECONNRESET, errno.EINTR})
_TRANSIENT_TYPES = (RegistryUnavailable, ConnectionError, TimeoutError, MemoryError)


def is_transient(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) says "try again later" rather than "this artifact is bad"."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _TRANSIENT_TYPES):
            return True
        if isinstance(current, OSError) and current.errno in _TRANSIENT_ERRNOS:
            return True
        if "out of memory" in str(current).lower():  # CUDA / allocator OOM: another model may free it
            return True
        current = current.__cause__ or current.__context__
    return False


@dataclass(frozen=True)
class LoadPolicy:
    backoff_initial_s: float = 2.0
    backoff_max_s: float = 120.0
    start_attempts: int = 3  # tries of the first load before the replica reports failure to Serve


@dataclass
class _Failures:
    count: int
    retry_at_monotonic: float


class LoadAttempts:
    """Per version (`name/version`): refused for good, or failed transiently and waiting."""

    def __init__(self, policy: LoadPolicy | None = None) -> None:
        self.policy = policy or LoadPolicy()
        self.refused: dict[str, str] = {}
        self._transient: dict[str, _Failures] = {}

    def blocked(self, key: str, now: float | None = None) -> bool:
        if key in self.refused:
            return True
        fail = self._transient.get(key)
        return fail is not None and (time.monotonic() if now is None else now) < fail.retry_at_monotonic

    def failed(self, key: str, exc: BaseException, now: float | None = None) -> str:
        """Record a failed load; returns what happens next ("refused" or "retry in N s")."""
        if not is_transient(exc):
            self.refused[key] = str(exc)
            self._transient.pop(key, None)
            return "refused"
        fail = self._transient.setdefault(key, _Failures(0, 0.0))
        fail.count += 1
        delay = self.backoff_s(fail.count)
        fail.retry_at_monotonic = (time.monotonic() if now is None else now) + delay
        return f"retry in {delay:.0f} s"

    def backoff_s(self, failures: int) -> float:
        return backoff_s(failures, self.policy.backoff_initial_s, self.policy.backoff_max_s)

    def succeeded(self, key: str) -> None:
        self._transient.pop(key, None)
        self.refused.pop(key, None)


@dataclass
class RegistryState:
    """Whether the registry answered when last asked; shown in `/v1/models`."""

    reachable: bool = True
    error: str | None = None
    down_since_wall: float | None = None
    started_from_cache: bool = False  # the serving version was loaded while the registry was away
    extra: dict[str, Any] = field(default_factory=dict)

    def down(self, error: str) -> None:
        if self.reachable:
            self.down_since_wall = time.time()
        self.reachable, self.error = False, error

    def up(self) -> None:
        self.reachable, self.error, self.down_since_wall = True, None, None

    def to_dict(self) -> dict:
        return {"reachable": self.reachable, "error": self.error, "down_since_wall": self.down_since_wall,
                "started_from_cache": self.started_from_cache}


def load_and_warm(cls: type, artifact_dir: Path, device: str, info: ModelInfo) -> Any:
    """A capability instance loaded from `artifact_dir` that answered its own sample request.
    Raises ModelLoadError (with the cause chained, so `is_transient` can tell which kind it was)."""
    capability = cls()
    try:
        capability.load(Path(artifact_dir), device)
        unwrap(run_batch(capability, [capability.sample_request()], info)[0])
    except Exception as exc:
        if hasattr(capability, "close"):
            with contextlib.suppress(Exception):  # the load error is the one worth reporting
                capability.close()
        raise ModelLoadError(f"{info.name} version {info.version} failed to load: {exc}") from exc
    return capability
