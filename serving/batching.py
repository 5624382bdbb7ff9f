"""Continuous batching for the HTTP path of a capability replica (used instead of `@serve.batch`).

Why not `@serve.batch`: Ray's batch loop forms the next batch as soon as `max_wait_ms` has passed
after its first request, even while the previous batch is still running, and parks it behind a
semaphore. Under load it therefore queues many batches of one or two requests instead of letting
requests accumulate: 612 of 721 batches held one request with 128 clients waiting (issue 11). Here
only a *free* worker takes a batch, so whatever arrived while the workers were busy goes into the
next batch, up to `max_batch_size` (and `max_batch_pixels` for images).

Two workers by default: while one batch is in the model (onnxruntime and torch release the GIL),
the next batch is decoded on another thread, so decode overlaps inference and both cores work.

Every item carries a deadline. An item whose deadline passed while it waited, or whose caller went
away (Ray cancels the call when the ingress times out), never enters a batch: it does not hold a
batch slot, and its caller gets `InferenceTimeout` (504).

>>> batcher = Batcher(lambda xs: [x * 2 for x in xs], BatchSettings(max_batch_size=8, max_wait_ms=5))
>>> await batcher.submit(21, timeout_s=5.0)
42
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.errors import HubError, InferenceTimeout, NotReady, Overloaded

log = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class BatchSettings:
    max_batch_size: int = 8
    max_wait_ms: float = 10.0
    workers: int = 2  # batches in flight at once: one decodes while the other is in the model
    max_queue: int = 256  # waiting items beyond this are refused with 503 at once
    max_batch_pixels: int = 0  # 0: no pixel cap; else a batch holds at most this many image pixels
    trim_after_pixels: int = 0  # 0: never; else give freed heap back to the OS after such a batch


@dataclass
class _Item:
    request: Any
    future: asyncio.Future
    enqueued_s: float
    deadline_s: float
    pixels: int = 0


@dataclass(frozen=True)
class BatchStats:
    queued: int
    running: int  # items inside batches that are running now
    batches: int
    items: int  # items that went through a batch
    expired: int  # items dropped before their batch because the deadline passed or the caller left
    refused: int  # items refused because the queue was full
    service_s_per_item: float | None  # measured: batch run time / batch size (moving average)
    last_batch_sizes: tuple[int, ...] = field(default=())

    def to_dict(self) -> dict:
        return {"queued": self.queued, "running": self.running, "batches": self.batches, "items": self.items,
                "expired": self.expired, "refused": self.refused,
                "mean_batch_size": round(self.items / self.batches, 3) if self.batches else None,
                "service_ms_per_item": round(self.service_s_per_item * 1000, 2) if self.service_s_per_item else None}


class Batcher:
    """An asyncio queue and `workers` tasks that each take one batch when free (see module doc).

    `run(requests) -> results` runs in a worker thread; a result that is an exception fails only its
    own item. `pixels(request) -> int` tells the pixel cost of an image request (0 for others).
    `on_batch(size, wait_s_list, run_s)` is called after each batch (metrics).
    """

    def __init__(self, run: Callable[[list], Sequence[Any]], settings: BatchSettings, *,
                 pixels: Callable[[Any], int] | None = None,
                 on_batch: Callable[[int, list[float], float], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._run = run
        self._pixels = pixels
        self._on_batch = on_batch
        self._clock = clock
        self.settings = settings
        self._queue: deque[_Item] = deque()
        self._arrived = asyncio.Event()
        self._workers: list[asyncio.Task] = []
        self._running_items = 0
        self._batches = self._items = self._expired = self._refused = 0
        self._service_s: float | None = None
        self._recent: deque[int] = deque(maxlen=32)
        self._closed = False

    # -- configuration --------------------------------------------------------------------------
    def configure(self, settings: BatchSettings) -> None:
        """Apply new settings; the worker count follows at once (extra workers end after their batch)."""
        self.settings = settings
        self._workers = [w for w in self._workers if not w.done()]
        while len(self._workers) < settings.workers:
            self._workers.append(asyncio.get_running_loop().create_task(self._work(len(self._workers))))
        self._arrived.set()

    # -- producers -------------------------------------------------------------------------------
    async def submit(self, request: Any, timeout_s: float) -> Any:
        """Queue one request and wait for its result; raises `Overloaded` (queue full) or
        `InferenceTimeout` (deadline passed before it could run)."""
        if self._closed or not self._workers:
            raise NotReady("the batcher is not running")
        if len(self._queue) >= self.settings.max_queue:
            self._refused += 1
            raise Overloaded(f"{len(self._queue)} requests are waiting; retry later",
                             retry_after_s=self.expected_wait_s(0))
        now = self._clock()
        item = _Item(request, asyncio.get_running_loop().create_future(), now, now + timeout_s,
                     self._pixels(request) if self._pixels else 0)
        self._queue.append(item)
        self._arrived.set()
        try:
            return await item.future
        except asyncio.CancelledError:
            item.future.cancel()  # the caller left (Ray cancelled the call): skip it when batching
            raise

    def expected_wait_s(self, extra: int = 1) -> float:
        """How long a request queued now would wait before its batch is done: the work ahead of it
        times the measured service time per item, spread over the workers."""
        per_item = self._service_s or 0.0
        ahead = len(self._queue) + self._running_items + extra
        return ahead * per_item / max(1, self.settings.workers)

    def stats(self) -> BatchStats:
        return BatchStats(len(self._queue), self._running_items, self._batches, self._items, self._expired,
                          self._refused, self._service_s, tuple(self._recent))

    async def close(self) -> None:
        self._closed = True
        for worker in self._workers:
            worker.cancel()
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(NotReady("the replica is shutting down"))

    # -- workers -----------------------------------------------------------------------------------
    async def _work(self, index: int) -> None:
        while not self._closed:
            if index >= self.settings.workers:
                return  # the worker count was lowered
            batch = await self._take()
            if batch:
                await self._execute(batch)

    def _drop_dead(self, now: float) -> None:
        """Answer items whose caller left or whose deadline passed; they never enter a batch."""
        keep: deque[_Item] = deque()
        for item in self._queue:
            if item.future.done():
                self._expired += 1
            elif now >= item.deadline_s:
                self._expired += 1
                item.future.set_exception(InferenceTimeout(
                    f"waited {now - item.enqueued_s:.1f} s in the queue, past its deadline"))
            else:
                keep.append(item)
        self._queue = keep

    async def _take(self) -> list[_Item]:
        """Wait for the first item, then until the batch is full or the oldest item has waited
        `max_wait_ms`; items that arrived while the workers were busy are taken at once."""
        while True:
            self._drop_dead(self._clock())
            if self._queue:
                oldest_wait_s = self._clock() - self._queue[0].enqueued_s
                remaining_s = self.settings.max_wait_ms / 1000.0 - oldest_wait_s
                if len(self._queue) >= self.settings.max_batch_size or remaining_s <= 0:
                    return self._pop_batch()
            else:
                remaining_s = None
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining_s)

    def _pop_batch(self) -> list[_Item]:
        settings = self.settings
        batch: list[_Item] = []
        pixels = 0
        while self._queue and len(batch) < settings.max_batch_size:
            item = self._queue[0]
            # a huge image still runs, alone; it just does not share its batch with more pixels
            if batch and settings.max_batch_pixels and pixels + item.pixels > settings.max_batch_pixels:
                break
            batch.append(self._queue.popleft())
            pixels += item.pixels
        if self._queue:
            self._arrived.set()  # another free worker can take the rest now
        return batch

    async def _execute(self, batch: list[_Item]) -> None:
        started = self._clock()
        waits = [started - item.enqueued_s for item in batch]
        pixels = sum(item.pixels for item in batch)
        self._running_items += len(batch)
        try:
            results = await asyncio.to_thread(self._run_and_trim, [item.request for item in batch], pixels)
            if len(results) != len(batch):
                raise HubError(f"a batch of {len(batch)} returned {len(results)} results")
        except Exception as exc:  # the whole batch failed: every caller gets the error
            results = [exc] * len(batch)
        finally:
            self._running_items -= len(batch)
        run_s = self._clock() - started
        self._batches += 1
        self._items += len(batch)
        self._recent.append(len(batch))
        per_item = run_s / len(batch)
        self._service_s = per_item if self._service_s is None else 0.8 * self._service_s + 0.2 * per_item
        for item, result in zip(batch, results, strict=True):
            if item.future.done():  # the caller left while its batch ran: the result is dropped
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)
        if self._on_batch is not None:
            self._on_batch(len(batch), waits, run_s)

    def _run_and_trim(self, requests: list, pixels: int) -> Sequence[Any]:
        try:
            return self._run(requests)
        finally:
            if self.settings.trim_after_pixels and pixels >= self.settings.trim_after_pixels:
                release_heap()


_LIBC: Any = None


def release_heap() -> bool:
    """Give freed heap memory back to the OS (glibc `malloc_trim`); after a batch of huge images the
    decoded frames are freed, but glibc keeps the pages in its arenas unless asked."""
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        try:
            _LIBC = ctypes.CDLL(name) if name else False
        except OSError:
            _LIBC = False
    if not _LIBC or not hasattr(_LIBC, "malloc_trim"):
        return False
    return bool(_LIBC.malloc_trim(0))
