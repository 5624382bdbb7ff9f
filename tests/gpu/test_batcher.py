"""DynamicBatcher: flush rules, order, error fan-out, queue bounds and shutdown, with a fake clock."""

from __future__ import annotations

import threading

import pytest

from gpu import BatchPolicy, Dropped, DynamicBatcher
from hub.errors import HubError, NotReady


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, ms: float) -> None:
        self.now_s += ms / 1000.0


class Recorder:
    """Batch function that doubles numbers, records each batch, and fails on "boom"."""

    def __init__(self) -> None:
        self.batches: list[list] = []

    def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        if "boom" in items:
            raise RuntimeError("model exploded")
        return [ValueError(f"bad {x}") if x == "bad" else x * 2 for x in items]


def make(policy: BatchPolicy, clock: FakeClock | None = None) -> tuple[DynamicBatcher, Recorder, FakeClock]:
    clock = clock or FakeClock()
    fn = Recorder()
    return DynamicBatcher(fn, policy, clock=clock, start=False), fn, clock


# Each step: ("submit", key, item) | ("advance", ms) | ("poll", items the poll must run)
FLUSH_CASES = [
    ("flush on size", BatchPolicy(max_batch_size=3, max_wait_ms=10),
     [("submit", "a", 1), ("submit", "b", 2), ("poll", 0), ("submit", "a", 3), ("poll", 3), ("poll", 0)],
     [[1, 2, 3]]),
    ("flush on deadline", BatchPolicy(max_batch_size=8, max_wait_ms=10),
     [("submit", "a", 1), ("advance", 4), ("submit", "b", 2), ("advance", 5.9), ("poll", 0),
      ("advance", 0.1), ("poll", 2)],
     [[1, 2]]),
    ("deadline counts from the oldest item", BatchPolicy(max_batch_size=8, max_wait_ms=10),
     [("submit", "a", 1), ("advance", 10), ("submit", "a", 2), ("poll", 2)],
     [[1, 2]]),
    ("size splits a backlog, rest waits for its deadline", BatchPolicy(max_batch_size=2, max_wait_ms=10),
     [("submit", "a", 1), ("submit", "a", 2), ("submit", "a", 3), ("poll", 2), ("poll", 0),
      ("advance", 10), ("poll", 1)],
     [[1, 2], [3]]),
    ("zero wait flushes every poll", BatchPolicy(max_batch_size=8, max_wait_ms=0),
     [("submit", "a", 1), ("poll", 1), ("submit", "b", 2), ("submit", "c", 3), ("poll", 2)],
     [[1], [2, 3]]),
]


@pytest.mark.parametrize(("name", "policy", "steps", "expected_batches"), FLUSH_CASES, ids=[c[0] for c in FLUSH_CASES])
def test_flush_rules(name, policy, steps, expected_batches):
    batcher, fn, clock = make(policy)
    futures = {}
    for step in steps:
        if step[0] == "submit":
            futures[step[2]] = batcher.submit(step[1], step[2])
        elif step[0] == "advance":
            clock.advance(step[1])
        else:
            assert batcher.poll() == step[1], f"{name}: poll after {step}"
    assert fn.batches == expected_batches
    for item, future in futures.items():
        assert future.result(timeout=0) == item * 2


def test_order_kept_across_keys_and_results_go_to_their_callers():
    batcher, fn, _ = make(BatchPolicy(max_batch_size=5, max_wait_ms=10))
    items = [("cam-a", 1), ("cam-b", 10), ("cam-a", 2), ("cam-c", 100), ("cam-b", 20)]
    futures = [batcher.submit(k, v) for k, v in items]
    assert batcher.poll() == 5
    assert fn.batches == [[1, 10, 2, 100, 20]]
    assert [f.result(timeout=0) for f in futures] == [2, 20, 4, 200, 40]


@pytest.mark.parametrize(
    ("batch", "failing"),
    [
        (["boom", 1, 2], {0, 1, 2}),  # the batch function raised: every caller of that batch fails
        ([1, "bad", 2], {1}),  # one item's result is an error: only that caller fails
    ],
)
def test_errors_fan_out_and_batcher_keeps_serving(batch, failing):
    batcher, fn, _ = make(BatchPolicy(max_batch_size=3, max_wait_ms=10))
    futures = [batcher.submit("k", x) for x in batch]
    assert batcher.poll() == 3
    for i, future in enumerate(futures):
        if i in failing:
            assert future.exception(timeout=0) is not None
        else:
            assert future.result(timeout=0) == batch[i] * 2
    if len(failing) == 3:  # the same exception object reaches every caller
        assert len({id(f.exception(timeout=0)) for f in futures}) == 1
    after = [batcher.submit("k", x) for x in (5, 6, 7)]
    assert batcher.poll() == 3
    assert [f.result(timeout=0) for f in after] == [10, 12, 14]
    stats = batcher.stats()
    assert (stats.failed, stats.completed, stats.batches) == (len(failing), 6 - len(failing), 2)


def test_wrong_result_count_fails_the_whole_batch():
    batcher = DynamicBatcher(lambda xs: xs[:-1], BatchPolicy(max_batch_size=2), start=False, clock=FakeClock())
    futures = [batcher.submit("k", 1), batcher.submit("k", 2)]
    batcher.poll()
    assert all(isinstance(f.exception(timeout=0), HubError) for f in futures)


# (policy, submissions, dropped items, dropped_by_key, items that run)
DROP_CASES = [
    ("total bound drops that camera's oldest", BatchPolicy(max_batch_size=10, max_queue=3),
     [("a", 1), ("a", 2), ("b", 3), ("a", 4)], [1], {"a": 1}, [2, 3, 4]),
    ("per-camera bound keeps only the latest frames", BatchPolicy(max_batch_size=10, max_queue_per_key=1),
     [("a", 1), ("b", 2), ("a", 3), ("a", 4)], [1, 3], {"a": 2}, [2, 4]),
    ("camera with nothing queued evicts the busiest camera's oldest", BatchPolicy(max_batch_size=10, max_queue=3),
     [("a", 1), ("a", 2), ("b", 3), ("c", 4)], [1], {"a": 1}, [2, 3, 4]),
    ("drop newest refuses the incoming item", BatchPolicy(max_batch_size=10, max_queue=2, drop="newest"),
     [("a", 1), ("a", 2), ("a", 3)], [3], {"a": 1}, [1, 2]),
]


@pytest.mark.parametrize(("name", "policy", "subs", "dropped", "by_key", "ran"), DROP_CASES, ids=[c[0] for c in DROP_CASES])
def test_queue_bound_drops_and_counts(name, policy, subs, dropped, by_key, ran):
    batcher, fn, clock = make(policy)
    futures = {item: batcher.submit(key, item) for key, item in subs}
    for item in dropped:
        assert isinstance(futures[item].exception(timeout=0), Dropped)
    stats = batcher.stats()
    assert stats.dropped == len(dropped) and stats.dropped_by_key == by_key
    assert stats.queued == len(ran)
    clock.advance(policy.max_wait_ms)
    batcher.poll()
    assert fn.batches == [ran]
    assert Dropped.status_code == 503


@pytest.mark.parametrize("drain", [True, False])
def test_close_drains_or_fails_waiting_items(drain):
    batcher, fn, _ = make(BatchPolicy(max_batch_size=2, max_wait_ms=1000))
    futures = [batcher.submit("k", x) for x in (1, 2, 3)]
    batcher.close(drain=drain)
    if drain:
        assert [f.result(timeout=0) for f in futures] == [2, 4, 6]
        assert fn.batches == [[1, 2], [3]]
    else:
        assert all(isinstance(f.exception(timeout=0), NotReady) for f in futures)
        assert fn.batches == []
    late = batcher.submit("k", 4)
    assert isinstance(late.exception(timeout=0), NotReady)


def test_threaded_many_producers_all_answered_and_drained_on_close():
    sizes: list[int] = []

    def fn(items):
        sizes.append(len(items))
        return [x * 2 for x in items]

    policy = BatchPolicy(max_batch_size=16, max_wait_ms=2, max_queue=10_000)
    batcher = DynamicBatcher(fn, policy)
    results: dict[str, list] = {}

    def producer(key: str) -> None:
        results[key] = [batcher.submit(key, i) for i in range(100)]

    threads = [threading.Thread(target=producer, args=(f"cam-{k}",)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close(drain=True, timeout_s=30)
    for futures in results.values():
        assert [f.result(timeout=0) for f in futures] == [2 * i for i in range(100)]
    stats = batcher.stats()
    assert stats.completed == 800 and stats.dropped == 0 and stats.queued == 0
    assert max(sizes) <= 16 and sum(sizes) == 800


@pytest.mark.parametrize(
    "kwargs",
    [{"max_batch_size": 0}, {"max_wait_ms": -1}, {"max_queue": 0}, {"max_queue_per_key": 0}, {"drop": "random"},
     {"max_age_ms": 0}, {"max_batch_ms": 0}],
)
def test_policy_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        BatchPolicy(**kwargs)


# (max_age_ms, items submitted as (key, value, at ms), poll at ms, batches run, values dropped)
AGE_CASES = [
    (100.0, [("a", 1, 0), ("b", 2, 50), ("a", 3, 120)], 130, [[2, 3]], [1]),
    (100.0, [("a", 1, 0), ("b", 2, 10)], 200, [], [1, 2]),  # everything too old: nothing runs
    (None, [("a", 1, 0), ("b", 2, 50), ("a", 3, 120)], 130, [[1, 2, 3]], []),
]


@pytest.mark.parametrize("max_age_ms,subs,poll_at,batches,dropped", AGE_CASES)
def test_items_older_than_max_age_leave_unrun_as_drops(max_age_ms, subs, poll_at, batches, dropped):
    batcher, fn, clock = make(BatchPolicy(max_batch_size=8, max_wait_ms=10, max_age_ms=max_age_ms))
    futures = {}
    for key, value, at_ms in subs:
        clock.advance(at_ms - clock.now_s * 1000.0)
        futures[value] = batcher.submit(key, value)
    clock.advance(poll_at - clock.now_s * 1000.0)
    batcher.poll()
    assert fn.batches == batches
    assert sorted(v for v, f in futures.items() if isinstance(f.exception(timeout=0), Dropped)) == dropped
    assert batcher.stats().dropped == len(dropped) and batcher.stats().queued == 0


# (max_batch_ms, ms each item takes, batch sizes the backlog of 10 items is run in)
BATCH_TIME_CASES = [
    (None, 100.0, [4, 4, 2]),  # no budget: max_batch_size
    (250.0, 100.0, [4, 2, 2, 2]),  # first batch measures 100 ms/item: then 2 per batch (200 <= 250 ms)
    (50.0, 100.0, [4, 1, 1, 1, 1, 1, 1]),  # slower than the budget: one at a time, never none
    (1000.0, 1.0, [4, 4, 2]),  # a fast device: the budget never binds
]


@pytest.mark.parametrize("max_batch_ms,item_ms,sizes", BATCH_TIME_CASES)
def test_max_batch_ms_cuts_batches_by_the_measured_time_per_item(max_batch_ms, item_ms, sizes):
    clock = FakeClock()
    seen: list[int] = []

    def slow(items: list) -> list:
        seen.append(len(items))
        clock.advance(item_ms * len(items))
        return items

    batcher = DynamicBatcher(slow, BatchPolicy(max_batch_size=4, max_wait_ms=0, max_batch_ms=max_batch_ms),
                             clock=clock, start=False)
    futures = [batcher.submit("cam", i) for i in range(10)]
    while batcher.poll():
        pass
    assert seen == sizes
    assert [f.result(timeout=0) for f in futures] == list(range(10))
