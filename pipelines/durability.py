"""What keeps the stream manager's data sound: one owner per `HUB_HOME`, atomic files, and an
upkeep thread that applies retention, retries spilled events and says what is wrong.

- `HomeLock`: the hub that runs the cameras and sends the webhooks of a data folder holds an
  exclusive lock on `<data_dir>/streams/owner.lock`; a second hub on the same `HUB_HOME` gets a
  clear error instead of delivering every webhook twice and restoring the same cameras.
- `write_json_atomic`: a unique temporary file, fsynced, renamed over the target, directory
  fsynced: concurrent writers never share a temporary file and a crash leaves the old or the new.
- `Upkeep`: retention every `interval_s` (sooner while writes fail: pruning frees room under the
  quota), spill retries, and `problems()` for the status and `/readyz`.

>>> lock = HomeLock.acquire(data_dir)          # HubError naming the other hub's pid if taken
>>> upkeep = Upkeep(store, recorder, RetentionSpec()).start()
>>> upkeep.problems()                          # ["event store write failed: ... 12 events held in memory"]
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from hub.errors import Conflict
from pipelines.events import EventStore, fsync_dir
from pipelines.retention import Retention, RetentionSpec
from pipelines.spill import SpillingRecorder

log = logging.getLogger(__name__)
OWNER_WAIT_S = 30.0  # a replica being replaced may hold the lock this long before it exits
MIN_FREE_MB = 200.0  # below this on the data disk the hub says so before writes start failing


class HomeLock:
    """An exclusive `flock` on `<data_dir>/streams/owner.lock`, held for the life of the process
    (the kernel drops it when the process dies, even by kill -9). Example: `HomeLock.acquire(d)`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path, wait_s: float | None = None) -> HomeLock:
        """Take the lock, waiting up to `wait_s` (a replica being replaced still holds it for a moment)."""
        path = Path(data_dir) / "streams" / "owner.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + (OWNER_WAIT_S if wait_s is None else wait_s)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise Conflict(
                        f"the data folder {data_dir} is in use by another hub ({holder}); two hubs on one "
                        "HUB_HOME would run every camera and send every webhook twice: give each hub its own "
                        "HUB_HOME, or stop the other one") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"]))
        return f"pid {info['pid']} on {info['host']}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON: all or nothing, durable, safe with concurrent writers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


class Upkeep:
    """Background upkeep of one event store. Example: `Upkeep(store, recorder, spec).start()`."""

    def __init__(self, store: EventStore, recorder: SpillingRecorder, spec: RetentionSpec | None = None, *,
                 retry_s: float = 5.0, min_free_mb: float = MIN_FREE_MB) -> None:
        self.store = store
        self.recorder = recorder
        self.retention = Retention(store, spec)
        self.interval_s = self.retention.spec.interval_s
        self.retry_s = retry_s
        self.min_free_mb = min_free_mb
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Upkeep:
        self._thread = threading.Thread(target=self._run, name="event-upkeep", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def run_once(self) -> dict | None:
        """Retention, then a retry of whatever is spilled. Returns the retention report."""
        report = None
        try:
            report = self.retention.run()
            self.last_error = None
        except Exception as exc:  # a full disk can fail the clean-up too; say so and try again
            self.last_error = f"retention failed: {type(exc).__name__}: {exc}"
            log.error("event store upkeep: %s", self.last_error)
        self.recorder.flush()
        return report

    def _run(self) -> None:
        self.run_once()
        next_full = time.monotonic() + self.interval_s
        while not self._stop.wait(self.retry_s):
            if not self.recorder.health()["ok"] or time.monotonic() >= next_full:
                self.run_once()
                next_full = time.monotonic() + self.interval_s

    def problems(self) -> list[str]:
        """What is wrong with the storage now (empty: nothing)."""
        out = []
        health = self.recorder.health()
        if not health["ok"]:
            out.append(f"event store write failed ({health['last_error']}): {health['spilled']} events held in "
                       "memory until it can be written")
        if health["lost"]:
            out.append(f"{health['lost']} events were lost: the in-memory spill overflowed")
        if self.last_error:
            out.append(self.last_error)
        try:
            usage = shutil.disk_usage(self.store.root)
        except OSError as exc:
            out.append(f"data disk unreadable: {exc}")
        else:
            free_mb = usage.free / 1e6
            if free_mb < min(self.min_free_mb, usage.total / 1e6 * 0.02):  # 2 % of a small disk
                out.append(f"data disk nearly full: {free_mb:.0f} MB free at {self.store.root}")
        return out

    def status(self) -> dict:
        return {"spill": self.recorder.health(), "retention": self.retention.last_run, "problems": self.problems()}
