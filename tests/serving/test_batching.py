"""The replica's continuous batcher (serving/batching.py), in-process and Ray-free.

A gate (threading.Event) holds the model call, so what accumulates while the workers are busy is
decided by the test, not by timing.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from hub.errors import InferenceTimeout, InvalidInput, Overloaded
from serving.batching import Batcher, BatchSettings, release_heap


class GatedModel:
    """Doubles numbers; each call waits for the gate; records every batch it saw."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.batches: list[list] = []

    def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        self.started.set()
        assert self.gate.wait(30)
        return [InvalidInput("negative") if x < 0 else x * 2 for x in items]


async def _until(predicate, limit_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not predicate():
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0.005)


def _batcher(model, **settings) -> Batcher:
    batcher = Batcher(model, BatchSettings(**{"max_wait_ms": 0, **settings}))
    batcher.configure(batcher.settings)
    return batcher


@pytest.mark.parametrize(("max_batch_size", "waiting", "expected"), [
    (8, 10, [[0], list(range(1, 9)), [9, 10]]),
    (4, 6, [[0], [1, 2, 3, 4], [5, 6]]),
    (32, 20, [[0], list(range(1, 21))]),
])
def test_requests_that_arrive_while_the_model_is_busy_share_the_next_batch(max_batch_size, waiting, expected):
    async def scenario():
        model = GatedModel()
        batcher = _batcher(model, max_batch_size=max_batch_size, workers=1)
        first = asyncio.ensure_future(batcher.submit(0, timeout_s=30))
        await _until(model.started.is_set)
        rest = [asyncio.ensure_future(batcher.submit(i, timeout_s=30)) for i in range(1, waiting + 1)]
        await _until(lambda: batcher.stats().queued == waiting)
        model.gate.set()
        results = await asyncio.gather(first, *rest)
        await batcher.close()
        return model.batches, results, batcher.stats()

    batches, results, stats = asyncio.run(scenario())
    assert batches == expected
    assert results == [2 * i for i in range(waiting + 1)]
    assert (stats.batches, stats.items) == (len(expected), waiting + 1)


def test_two_workers_run_two_batches_at_once():
    async def scenario():
        model = GatedModel()
        batcher = _batcher(model, max_batch_size=2, workers=2)
        futures = [asyncio.ensure_future(batcher.submit(i, timeout_s=30)) for i in range(4)]
        await _until(lambda: len(model.batches) == 2)  # both workers are inside the model at once
        running = batcher.stats().running
        model.gate.set()
        await asyncio.gather(*futures)
        await batcher.close()
        return running

    assert asyncio.run(scenario()) == 4


@pytest.mark.parametrize("how", ["deadline", "caller_left"])
def test_an_item_that_expired_or_was_abandoned_never_enters_a_batch(how):
    async def scenario():
        model = GatedModel()
        batcher = _batcher(model, max_batch_size=8, workers=1)
        first = asyncio.ensure_future(batcher.submit(1, timeout_s=30))
        await _until(model.started.is_set)
        doomed = asyncio.ensure_future(batcher.submit(2, timeout_s=0.001 if how == "deadline" else 30))
        kept = asyncio.ensure_future(batcher.submit(3, timeout_s=30))
        await _until(lambda: batcher.stats().queued == 2)
        if how == "caller_left":
            doomed.cancel()
        else:
            await asyncio.sleep(0.01)  # past the 1 ms deadline
        model.gate.set()
        outcome = await asyncio.gather(first, doomed, kept, return_exceptions=True)
        await batcher.close()
        return model.batches, outcome, batcher.stats()

    batches, outcome, stats = asyncio.run(scenario())
    assert batches == [[1], [3]]
    assert outcome[0] == 2 and outcome[2] == 6
    expected_error = InferenceTimeout if how == "deadline" else asyncio.CancelledError
    assert isinstance(outcome[1], expected_error)
    assert stats.expired == 1


def test_a_full_queue_refuses_with_retry_after():
    async def scenario():
        model = GatedModel()
        batcher = _batcher(model, max_batch_size=1, workers=1, max_queue=2)
        running = asyncio.ensure_future(batcher.submit(1, timeout_s=30))
        await _until(model.started.is_set)
        queued = [asyncio.ensure_future(batcher.submit(i, timeout_s=30)) for i in (2, 3)]
        await _until(lambda: batcher.stats().queued == 2)
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(4, timeout_s=30)
        model.gate.set()
        await asyncio.gather(running, *queued)
        await batcher.close()
        return refused.value, batcher.stats()

    error, stats = asyncio.run(scenario())
    assert error.status_code == 503 and int(error.headers["Retry-After"]) >= 1
    assert stats.refused == 1


def test_one_bad_item_fails_alone_and_a_failing_batch_fails_all_its_callers():
    def explode(items):
        if 99 in items:
            raise RuntimeError("model crashed")
        return [InvalidInput("negative") if x < 0 else x * 2 for x in items]

    async def scenario():
        batcher = _batcher(explode, max_batch_size=8, workers=1, max_wait_ms=50)
        good = await asyncio.gather(batcher.submit(1, timeout_s=30), batcher.submit(-1, timeout_s=30),
                                    return_exceptions=True)
        bad = await asyncio.gather(batcher.submit(99, timeout_s=30), batcher.submit(5, timeout_s=30),
                                   return_exceptions=True)
        await batcher.close()
        return good, bad

    good, bad = asyncio.run(scenario())
    assert good[0] == 2 and isinstance(good[1], InvalidInput)
    assert all(isinstance(e, RuntimeError) for e in bad)


@pytest.mark.parametrize(("pixels", "cap", "expected"), [
    ([10, 10, 10, 10], 25, [[0], [1, 2], [3, 4]]),  # pairs fit under the cap
    ([10, 100, 10, 10], 25, [[0], [1], [2], [3, 4]]),  # the huge one runs alone, but it runs
    ([10, 10, 10, 10], 0, [[0], [1, 2, 3, 4]]),  # no cap
])
def test_a_pixel_cap_splits_batches_of_big_images(pixels, cap, expected):
    sizes = {0: 1, **{i + 1: p for i, p in enumerate(pixels)}}

    async def scenario():
        model = GatedModel()
        batcher = Batcher(model, BatchSettings(max_batch_size=8, max_wait_ms=0, workers=1, max_batch_pixels=cap),
                          pixels=lambda x: sizes[x])
        batcher.configure(batcher.settings)
        first = asyncio.ensure_future(batcher.submit(0, timeout_s=30))
        await _until(model.started.is_set)
        rest = [asyncio.ensure_future(batcher.submit(i, timeout_s=30)) for i in range(1, len(pixels) + 1)]
        await _until(lambda: batcher.stats().queued == len(pixels))
        model.gate.set()
        await asyncio.gather(first, *rest)
        await batcher.close()
        return model.batches

    assert asyncio.run(scenario()) == expected


def test_release_heap_is_callable_here():
    assert release_heap() in (True, False)  # glibc: trims; elsewhere: a no-op that says so
