"""`DynamicBatcher`: many producers (cameras), one batched call, results fanned back in order.

API (the stream pipeline builds on exactly this):

- `DynamicBatcher(fn, policy, *, clock=time.monotonic, start=True, name="batcher")` where
  `fn(items: list[T]) -> Sequence[R]` runs ONE batch and returns one result per item, in order.
  A result that is an exception instance fails only that item's future (a corrupt frame in a good
  batch); an exception raised by `fn` fails every future of that batch, and the batcher keeps
  serving the next batch.
- `submit(key, item) -> concurrent.futures.Future[R]`: never blocks. `key` is the producer's
  identity (the `camera_id`); the per-key bound and drop-oldest act per key. A dropped item's
  future fails with `Dropped` (an `Overloaded`, HTTP 503).
- `stats() -> BatcherStats`: counts of submitted/completed/failed/dropped items (drops per key),
  batches and the queue depth now.
- `close(drain=True)`: stop accepting; with `drain` the waiting items are still run, otherwise
  their futures fail with `NotReady`. Also a context manager.
- `poll() -> int`: with `start=False` no thread is started and the caller drives the batcher:
  `poll()` runs at most one batch if one is due at `clock()` (tests use a fake clock this way).

Flush rule: a batch is taken when `policy.max_batch_size` items wait or the oldest waiting item
has waited `policy.max_wait_ms`; items leave in arrival order across all keys.

>>> batcher = DynamicBatcher(lambda xs: [x * 2 for x in xs], BatchPolicy(max_batch_size=8, max_wait_ms=5))
>>> batcher.submit("cam-1", 21).result()
42
>>> batcher.close()
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from gpu.policy import BatchPolicy
from hub.errors import HubError, NotReady, Overloaded

T = TypeVar("T")
R = TypeVar("R")


class Dropped(Overloaded):
    """The item was dropped by the batcher's queue bound (a newer frame of the camera replaced it)."""

    code = "dropped"


@dataclass(frozen=True)
class BatcherStats:
    submitted: int
    completed: int  # futures resolved with a result
    failed: int  # futures resolved with an error (per-item or whole-batch), drops excluded
    dropped: int
    dropped_by_key: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    queued: int = 0

    @property
    def mean_batch_size(self) -> float:
        done = self.completed + self.failed
        return done / self.batches if self.batches else 0.0


@dataclass
class _Pending:
    key: str
    item: Any
    future: Future
    enqueued_s: float


class DynamicBatcher(Generic[T, R]):
    """Collects items from many producers and runs them through `fn` in batches (see module doc).

    Example::

        batcher = DynamicBatcher(detector.detect_arrays, BatchPolicy(max_batch_size=32, max_wait_ms=10,
                                                                       max_queue_per_key=2))
        fut = batcher.submit("cam-7", frame_rgb)
        fut.add_done_callback(lambda f: on_detections("cam-7", f))
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        policy: BatchPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        start: bool = True,
        name: str = "batcher",
    ) -> None:
        self._fn = fn
        self.policy = policy or BatchPolicy()
        self._clock = clock
        self._name = name
        self._queue: deque[_Pending] = deque()
        self._per_key: Counter[str] = Counter()
        self._cond = threading.Condition()
        self._closing = False
        self._drain = True
        self._submitted = self._completed = self._failed = self._dropped = self._batches = 0
        self._dropped_by_key: Counter[str] = Counter()
        self._item_s: float | None = None  # measured seconds per item of a batch (moving average)
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ producers
    def submit(self, key: str, item: T) -> Future:
        future: Future = Future()
        dropped: list[_Pending] = []
        with self._cond:
            if self._closing:
                future.set_exception(NotReady(f"{self._name} is closed"))
                return future
            self._submitted += 1
            pending = _Pending(key, item, future, self._clock())
            if self._must_drop(key):
                if self.policy.drop == "newest":
                    dropped.append(pending)
                else:
                    dropped.append(self._pop_victim(key))
            if not (dropped and dropped[-1] is pending):
                self._queue.append(pending)
                self._per_key[key] += 1
            for victim in dropped:
                self._dropped += 1
                self._dropped_by_key[victim.key] += 1
            self._cond.notify()
        for victim in dropped:  # outside the lock: done-callbacks run user code
            victim.future.set_exception(Dropped(f"{self._name}: queue bound hit; item of {victim.key!r} dropped"))
        return future

    def _must_drop(self, key: str) -> bool:
        per_key = self.policy.max_queue_per_key
        return len(self._queue) >= self.policy.max_queue or (
            per_key is not None and self._per_key[key] >= per_key
        )

    def _pop_victim(self, key: str) -> _Pending:
        victim_key = key
        if self._per_key[key] == 0:  # this camera has nothing waiting: take from the busiest one
            victim_key = max(self._per_key, key=lambda k: self._per_key[k])
        for i, pending in enumerate(self._queue):
            if pending.key == victim_key:
                del self._queue[i]
                self._per_key[victim_key] -= 1
                if not self._per_key[victim_key]:
                    del self._per_key[victim_key]
                return pending
        raise AssertionError("per-key counts out of step with the queue")  # pragma: no cover

    # ------------------------------------------------------------------ batch formation
    def _due(self, now: float) -> bool:
        if not self._queue:
            return False
        if self._closing or len(self._queue) >= self._batch_cap():
            return True
        return now - self._queue[0].enqueued_s >= self.policy.max_wait_s

    def _expired(self, now: float) -> list[_Pending]:
        """Items older than `policy.max_age_ms` leave unrun (counted as drops): their answer would come
        too late to matter, and running them would make every newer item later still."""
        max_age_s = self.policy.max_age_s
        out: list[_Pending] = []
        while max_age_s is not None and self._queue and now - self._queue[0].enqueued_s > max_age_s:
            pending = self._queue.popleft()
            self._per_key[pending.key] -= 1
            if not self._per_key[pending.key]:
                del self._per_key[pending.key]
            self._dropped += 1
            self._dropped_by_key[pending.key] += 1
            out.append(pending)
        return out

    def _fail_expired(self, expired: list[_Pending]) -> None:
        for pending in expired:  # outside the lock: done-callbacks run user code
            pending.future.set_exception(Dropped(f"{self._name}: item of {pending.key!r} waited longer than "
                                                 f"{self.policy.max_age_ms:g} ms; dropped"))

    def _batch_cap(self) -> int:
        """`max_batch_size`, or fewer when `max_batch_ms` / the measured time per item says so."""
        budget_s = self.policy.max_batch_s
        if budget_s is None or not self._item_s:
            return self.policy.max_batch_size
        return max(1, min(self.policy.max_batch_size, int(budget_s / self._item_s)))

    def _take(self) -> list[_Pending]:
        n = min(len(self._queue), self._batch_cap())
        batch = [self._queue.popleft() for _ in range(n)]
        for pending in batch:
            self._per_key[pending.key] -= 1
            if not self._per_key[pending.key]:
                del self._per_key[pending.key]
        return batch

    def poll(self) -> int:
        """Run at most one due batch in the calling thread; returns the number of items it ran."""
        with self._cond:
            expired = self._expired(self._clock())
            batch = self._take() if self._due(self._clock()) else []
        self._fail_expired(expired)
        if batch:
            self._execute(batch)
        return len(batch)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closing and (not self._queue or not self._drain):
                        return
                    now = self._clock()
                    expired = self._expired(now)
                    if self._due(now):
                        batch = self._take()
                        break
                    if expired:
                        batch = []
                        break
                    timeout = None
                    if self._queue:
                        timeout = max(self._queue[0].enqueued_s + self.policy.max_wait_s - now, 0.0)
                    self._cond.wait(timeout)
            self._fail_expired(expired)
            if batch:
                self._execute(batch)

    def _execute(self, batch: list[_Pending]) -> None:
        started_s = self._clock()
        try:
            results = self._fn([p.item for p in batch])
            item_s = (self._clock() - started_s) / len(batch)
            with self._cond:  # slow to forget a fast batch, quick to learn a slow one: latency first
                self._item_s = item_s if self._item_s is None else max(item_s, 0.8 * self._item_s + 0.2 * item_s)
            if len(results) != len(batch):
                raise HubError(f"{self._name}: batch function returned {len(results)} results for {len(batch)} items")
        except BaseException as exc:  # noqa: BLE001  (the error belongs to every caller of the batch)
            with self._cond:
                self._batches += 1
                self._failed += len(batch)
            for pending in batch:
                pending.future.set_exception(exc)
            return
        ok = sum(not isinstance(r, BaseException) for r in results)
        with self._cond:
            self._batches += 1
            self._completed += ok
            self._failed += len(batch) - ok
        for pending, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)

    # ------------------------------------------------------------------ lifecycle
    def stats(self) -> BatcherStats:
        with self._cond:
            return BatcherStats(
                submitted=self._submitted,
                completed=self._completed,
                failed=self._failed,
                dropped=self._dropped,
                dropped_by_key=dict(self._dropped_by_key),
                batches=self._batches,
                queued=len(self._queue),
            )

    def close(self, drain: bool = True, timeout_s: float | None = None) -> None:
        """Stop accepting items; run (drain) or fail the waiting ones; join the worker thread."""
        with self._cond:
            self._closing = True
            self._drain = drain
            abandoned = [] if drain else list(self._queue)
            if not drain:
                self._queue.clear()
                self._per_key.clear()
                self._failed += len(abandoned)
            self._cond.notify_all()
        for pending in abandoned:
            pending.future.set_exception(NotReady(f"{self._name} closed before the item ran"))
        if self._thread is not None:
            self._thread.join(timeout_s)
        else:  # manual mode: drain in the caller's thread
            while self.poll():
                pass

    @property
    def closed(self) -> bool:
        return self._closing

    def __enter__(self) -> DynamicBatcher[T, R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(drain=True)
