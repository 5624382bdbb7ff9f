"""Admission at the ingress, route deadlines, the client deadline header and the JSON body parser
(serving/admission.py, serving/body.py): Ray-free, with a fake clock where time matters."""

from __future__ import annotations

import asyncio
import json

import pytest

from hub.errors import InferenceTimeout, InvalidInput, Overloaded
from serving.admission import Admission, RouteDeadline, client_timeout_s, route_deadline
from serving.body import parse_json


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def _served(gate: Admission, clock: FakeClock, count: int, service_s: float) -> None:
    """`count` requests served one after another, `service_s` each."""
    for _ in range(count):
        with gate.admit():
            clock.now_s += service_s


@pytest.mark.parametrize(("service_s", "budget_s", "admitted"), [
    (0.1, 0.95, 9),  # admitted while (in flight + 1) x 0.1 s <= 0.95 s
    (0.05, 0.97, 19),
    (0.5, 0.9, 1),
])
def test_admission_refuses_when_the_expected_wait_exceeds_the_budget(service_s, budget_s, admitted):
    clock = FakeClock()
    gate = Admission("see", latency_budget_s=budget_s, max_in_flight=1000, min_in_flight=1, headroom=1.0,
                     clock=clock)
    _served(gate, clock, 10, service_s)
    assert gate.service_s() == pytest.approx(service_s)
    held = []
    with pytest.raises(Overloaded) as refused:
        for _ in range(1000):
            cm = gate.admit()
            cm.__enter__()
            held.append(cm)
    assert len(held) == admitted
    assert int(refused.value.headers["Retry-After"]) >= 1
    for cm in held:
        cm.__exit__(None, None, None)
    assert gate.in_flight == 0 and gate.stats().refused == 1


@pytest.mark.parametrize(("floor", "hard_limit", "admitted", "why"), [
    (3, 5, 3, "before any service time is measured"),  # an unknown wait is not a short one
    (8, 5, 5, "5 requests in flight"),  # the hard limit holds over the floor
    (0, 5, 1, "before any service time is measured"),  # nothing in flight: always one
])
def test_without_a_measurement_admission_takes_the_floor_and_no_more(floor, hard_limit, admitted, why):
    gate = Admission("see", latency_budget_s=1.0, max_in_flight=hard_limit, min_in_flight=floor, clock=FakeClock())
    held = []
    with pytest.raises(Overloaded, match=why):
        for _ in range(hard_limit + 1):
            cm = gate.admit()
            cm.__enter__()
            held.append(cm)
    assert len(held) == admitted
    for cm in held:
        cm.__exit__(None, None, None)


@pytest.mark.parametrize(("service_s", "admitted"), [
    (1.0, 1),  # (1 ahead + its own) x 1 s > 3 s / 2: only the request with nothing ahead
    (0.35, 4),  # (in flight + 1) x 0.35 s <= 1.5 s while in flight <= 3
    (0.05, 16),  # fast enough that the budget admits past the floor (16 here) until the hard limit
])
def test_once_measured_the_budget_decides_below_the_floor_too(service_s, admitted):
    """issue 11: `see` kept a floor of 16 admitted under a 400-client storm and took 7.8-12.6 s
    against its 3 s budget; once a service time is known the floor no longer applies."""
    clock = FakeClock()
    gate = Admission("see", latency_budget_s=3.0, max_in_flight=16, min_in_flight=16, clock=clock)
    _served(gate, clock, 8, service_s)
    held = []
    with pytest.raises(Overloaded):
        for _ in range(17):
            cm = gate.admit()
            cm.__enter__()
            held.append(cm)
    assert len(held) == admitted
    for cm in held:
        cm.__exit__(None, None, None)


def test_idle_time_does_not_make_a_capability_look_slow():
    clock = FakeClock()
    gate = Admission("reason", latency_budget_s=1.0, max_in_flight=100, min_in_flight=1, clock=clock, window_s=100)
    _served(gate, clock, 5, 0.1)
    clock.now_s += 50  # an idle minute
    _served(gate, clock, 5, 0.1)
    assert gate.service_s() == pytest.approx(0.1)


def _batches(gate: Admission, clock: FakeClock, count: int, size: int, run_s: float) -> None:
    """`count` batches one after another: `size` requests admitted together, answered together
    (tracked without the budget check: this is the history the estimate learns from)."""
    for _ in range(count):
        held = [gate.track() for _ in range(size)]
        for cm in held:
            cm.__enter__()
        clock.now_s += run_s
        for cm in held:
            cm.__exit__(None, None, None)


@pytest.mark.parametrize(("size", "run_s", "window_s"), [
    (1, 0.2, 10.0),  # one at a time: 0.2 s each
    (3, 7.5, 10.0),  # read under load: batches of 3 every 7.5 s, longer than half the window
    (4, 12.0, 10.0),  # a batch longer than the whole window
    (8, 1.0, 10.0),
    (32, 0.5, 10.0),  # reason: one batch is more completions than the estimate keeps
])
def test_the_service_time_of_batches_is_measured_without_a_batch_of_bias(size, run_s, window_s):
    clock = FakeClock()
    gate = Admission("read", latency_budget_s=1000.0, max_in_flight=1000, min_in_flight=1, clock=clock,
                     window_s=window_s)
    _batches(gate, clock, 12, size, run_s)
    assert gate.service_s() == pytest.approx(run_s / size)
    assert gate.mean_batch() == pytest.approx(size)


def test_a_capability_that_stalls_looks_slower_the_longer_it_stalls():
    clock = FakeClock()
    gate = Admission("read", latency_budget_s=20.0, max_in_flight=1000, min_in_flight=1, clock=clock, window_s=10)
    _batches(gate, clock, 6, 4, 8.0)  # 2 s per request
    estimates = []
    with gate.admit():
        for _ in range(3):
            clock.now_s += 30.0  # no answer for 30, 60, 90 s while busy
            estimates.append(gate.service_s())
    assert None not in estimates and estimates == sorted(estimates) and estimates[0] > 2.0


@pytest.mark.parametrize(("size", "run_s", "budget_s", "admitted"), [
    # 2.5 s per request in batches of 3: admitted while (in flight + 3) x 2.5 s <= 20 s (a request
    # waits for those ahead and for its whole batch); the estimate before: 1.5 s a request, 13 admitted
    (3, 7.5, 20.0, 6),
    (4, 8.0, 20.0, 7),  # 2 s per request, batches of 4 (before: 1.1 s, 17)
    (1, 2.0, 20.0, 10),  # one at a time: (in flight + 1) x 2 s <= 20 s
])
def test_a_slow_batched_capability_is_admitted_only_up_to_its_budget(size, run_s, budget_s, admitted):
    clock = FakeClock()
    gate = Admission("read", latency_budget_s=budget_s, max_in_flight=16, min_in_flight=1, max_batch=size,
                     headroom=1.0, clock=clock, window_s=10)
    _batches(gate, clock, 10, size, run_s)
    held = []
    with pytest.raises(Overloaded, match="latency budget"):
        for _ in range(16):
            cm = gate.admit()
            cm.__enter__()
            held.append(cm)
    assert len(held) == admitted
    for cm in held:
        cm.__exit__(None, None, None)


def _admitted_until_refused(gate: Admission, limit: int = 16) -> int:
    held = []
    with pytest.raises(Overloaded, match="latency budget"):
        for _ in range(limit):
            cm = gate.admit()
            cm.__enter__()
            held.append(cm)
    for cm in held:
        cm.__exit__(None, None, None)
    return len(held)


@pytest.mark.parametrize(("fast_s", "slow", "admitted"), [
    # read at 8 clients (batches of 3 in 7.5 s), then the refusals of 32 clients take its CPU and a
    # batch takes 15 s. Its last two batches (6 completions in 22.5 s) show 3.75 s a request, so
    # (in flight + 3) x 3.75 s <= 20 s admits 3; the mean of the 16 kept completions admitted 4.
    (7.5, [15.0], 3),
    (7.5, [15.0, 7.5], 3),  # the slow batch is still one of the last two
    (7.5, [11.25], 4),  # 3.125 s a request: (n + 3) x 3.125 <= 20 (the mean admitted 5)
    (7.5, [], 6),  # no slowdown: (n + 3) x 2.5 <= 20, as before
])
def test_a_slowdown_is_planned_for_from_the_last_batches(fast_s, slow, admitted):
    clock = FakeClock()
    gate = Admission("read", latency_budget_s=20.0, max_in_flight=16, min_in_flight=1, max_batch=3, headroom=1.0,
                     clock=clock, window_s=10)
    _batches(gate, clock, 8, 3, fast_s)
    for run_s in slow:
        _batches(gate, clock, 1, 3, run_s)
    assert _admitted_until_refused(gate) == admitted


@pytest.mark.parametrize(("running_s", "admitted_after"), [
    (0.0, 3),  # a batch of 3 just started: (3 running + n + 3) x 2.5 s <= 20 s admits 3 more
    # the mean over the kept completions counts the time since the last answer too, but spread
    # over 15 of them: 3.0 s a request at 7.5 s (admits 1), 3.3 s at 12 s (admitted 1 before);
    # the running batch itself has taken 12 / 3 = 4 s a request, and (3 + 3) x 4 > 20
    (7.5, 1),
    (12.0, 0),
    (15.0, 0),
])
def test_a_batch_running_past_its_time_slows_the_estimate_before_it_ends(running_s, admitted_after):
    clock = FakeClock()
    gate = Admission("read", latency_budget_s=20.0, max_in_flight=16, min_in_flight=1, max_batch=3, headroom=1.0,
                     clock=clock, window_s=10)
    _batches(gate, clock, 8, 3, 7.5)
    running = [gate.admit() for _ in range(3)]
    for cm in running:
        cm.__enter__()
    clock.now_s += running_s
    try:
        assert _admitted_until_refused(gate) == admitted_after
    finally:
        for cm in running:
            cm.__exit__(None, None, None)


@pytest.mark.parametrize(("budget_s", "headroom", "admitted"), [
    # 2.5 s a request in batches of 3 (read): admitted while (in flight + 3) x 2.5 s <= budget / headroom
    (20.0, 2.0, 2),  # the default: the expected wait planned at 10 s, room for read to run 2x slower
    (20.0, 1.0, 6),  # without room: every admitted request expects 20 s, and half of them take longer
    (40.0, 2.0, 6),
    (60.0, 2.0, 10),
])
def test_the_expected_wait_is_planned_with_room_below_the_budget(budget_s, headroom, admitted):
    clock = FakeClock()
    gate = Admission("read", latency_budget_s=budget_s, max_in_flight=16, min_in_flight=1, max_batch=3,
                     headroom=headroom, clock=clock, window_s=10)
    _batches(gate, clock, 10, 3, 7.5)
    assert _admitted_until_refused(gate) == admitted


def test_a_timeout_is_counted_and_frees_the_slot():
    gate = Admission("see", latency_budget_s=1.0, max_in_flight=1, min_in_flight=1, clock=FakeClock())
    with pytest.raises(InferenceTimeout), gate.admit():
        raise InferenceTimeout("late")
    assert (gate.in_flight, gate.timed_out) == (0, 1)
    with gate.admit():  # the one slot is free again
        pass


@pytest.mark.parametrize("timeouts", [0, 8, 30])
def test_requests_that_time_out_do_not_count_as_served(timeouts):
    clock = FakeClock()
    gate = Admission("see", latency_budget_s=100.0, max_in_flight=1000, min_in_flight=1, clock=clock, window_s=100)
    _served(gate, clock, 8, 1.0)
    for _ in range(timeouts):  # 504s at once: dropped from the queue without running
        with pytest.raises(InferenceTimeout), gate.admit():
            raise InferenceTimeout("late")
    assert gate.service_s() == pytest.approx(1.0)
    assert gate.stats().timed_out == timeouts


@pytest.mark.parametrize(("headers", "limit_s", "expected"), [
    ({}, 120.0, 120.0),
    ({"x-timeout-s": "2.5"}, 120.0, 2.5),
    ({"x-timeout-s": "900"}, 120.0, 120.0),  # a client cannot extend the capability's timeout
    ({"x-timeout-s": "soon"}, 120.0, InvalidInput),
    ({"x-timeout-s": "0"}, 120.0, InvalidInput),
    ({"x-timeout-s": "nan"}, 120.0, InvalidInput),
])
def test_client_deadline_header(headers, limit_s, expected):
    if expected is InvalidInput:
        with pytest.raises(InvalidInput):
            client_timeout_s(headers, limit_s)
    else:
        assert client_timeout_s(headers, limit_s) == expected


@pytest.mark.parametrize(("path", "expected"), [
    ("/v1/see", 125.0),
    ("/v1/reason/cases", 35.0),
    ("/v1/events/stream", None),
    ("/v1/streams", 300.0),
    ("/readyz", 300.0),
])
def test_route_deadlines(path, expected):
    assert route_deadline(path, capabilities={"see": 120.0, "reason": 30.0}, request_timeout_s=300.0) == expected


def _run_asgi(app, path: str) -> list[dict]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "http", "path": path}, receive, send))
    return sent


@pytest.mark.parametrize(("path", "status"), [("/slow", 504), ("/v1/events/stream", 200)])
def test_route_deadline_middleware_answers_504_but_leaves_streams_alone(path, status):
    async def slow_app(scope, receive, send):
        await asyncio.sleep(0.2)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    app = RouteDeadline(slow_app, lambda p: None if p == "/v1/events/stream" else 0.01)
    sent = _run_asgi(app, path)
    assert sent[0]["status"] == status
    if status == 504:
        assert json.loads(sent[1]["body"])["error"]["code"] == "inference_timeout"


@pytest.mark.parametrize(("status", "chunks", "heard"), [
    (503, 1, 1),  # a refusal: timed once, when its answer is sent
    (503, 3, 1),  # a body in parts: timed at the last part, once
    (200, 1, 0),
    (504, 1, 0),
])
def test_route_deadline_middleware_times_refusals_only(status, chunks, heard):
    async def answer(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": []})
        for i in range(chunks):
            await send({"type": "http.response.body", "body": b"x", "more_body": i < chunks - 1})

    refusals: list[tuple[str, float]] = []
    app = RouteDeadline(answer, lambda p: 10.0, on_refused=lambda path, ms: refusals.append((path, ms)))
    sent = _run_asgi(app, "/v1/see")
    assert sent[0]["status"] == status and len(sent) == chunks + 1
    assert [path for path, _ in refusals] == ["/v1/see"] * heard
    assert all(ms >= 0 for _, ms in refusals)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(("body", "error"), [
    (b'{"text": "ok", "top_k": 3}', None),
    (_nested(20), None),
    (_nested(40), "nested deeper"),
    (_nested(10_000), "nested deeper"),  # the C parser's RecursionError, answered as 400
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, "nested deeper"),
    (json.dumps(list(range(200_000))).encode(), "more than"),
    (b"", "empty"),
    (b"   ", "empty"),
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_json_bodies_are_bounded(body, error):
    if error is None:
        assert parse_json(body) == json.loads(body)
    else:
        with pytest.raises(InvalidInput, match=error):
            parse_json(body)
