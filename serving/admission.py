"""Admission control and deadlines at the ingress: refuse early, stop late work.

- `Admission`: one per capability. It counts the requests the ingress has in flight to that
  capability and measures how fast the capability completes them (completions per second of busy
  time, over the last `window_s`). A new request is refused with 503 + `Retry-After`, before its
  body is even read, when the expected wait (requests ahead x measured time per request) exceeds the
  capability's `latency_budget_s` / `BUDGET_HEADROOM`, or when `max_in_flight` are already in flight.
- `RouteDeadline`: ASGI middleware that bounds every route with a deadline and answers 504 when it
  passes. Capability routes get their own `timeout_s` (plus a grace, so the inner, more precise 504
  wins), the live event feed gets none (Server-Sent Events stay open for hours: Ray's proxy timeout
  is switched off for that reason, see `serving.launch`), every other route `http.request_timeout_s`.
- `client_timeout_s`: a client may ask for a shorter deadline with `X-Timeout-S`; work for a client
  that has given up is then dropped instead of done for nobody.

>>> gate = Admission("see", latency_budget_s=2.0, max_in_flight=64, min_in_flight=16)
>>> with gate.admit():   # raises Overloaded (503, Retry-After) when the wait would exceed 2 s
...     ...
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from hub.errors import InferenceTimeout, InvalidInput, Overloaded

TIMEOUT_HEADER = "x-timeout-s"
STREAMING_PATHS = frozenset({"/v1/events/stream"})
CAPABILITY_GRACE_S = 5.0  # the route's backstop fires after the capability's own 504
MIN_COMPLETIONS = 4  # completions needed before the service time is estimated
KEEP_COMPLETIONS = 16  # completions kept for the estimate however old (Admission.service_s)
SAME_BATCH_S = 0.02  # completions this close together (busy time) came from one batch
RECENT_BATCHES = 2  # the capability is planned at least as slow as its last two full batches
# The expected wait is planned against the budget / BUDGET_HEADROOM. In overload every admitted
# request enters just below the threshold, so its expected latency *is* the threshold and half of
# them would be later; the p99 needs room for batches that run slower than the estimate says. 2x is
# what `read` showed: 1.1-1.3 s a request at 8 clients, 2.5-3.1 s at 32 while the refusals of the
# other 24 took its CPU (issue 11), a slowdown no estimate from the minute before can see coming.
# It costs no throughput while the queue holds a batch beyond the one running.
BUDGET_HEADROOM = 2.0


@dataclass(frozen=True)
class AdmissionStats:
    in_flight: int
    admitted: int
    refused: int
    timed_out: int
    service_s_per_request: float | None
    expected_wait_s: float

    def to_dict(self) -> dict:
        per = self.service_s_per_request
        return {"in_flight": self.in_flight, "admitted": self.admitted, "refused": self.refused,
                "timed_out": self.timed_out, "service_ms_per_request": round(per * 1000, 2) if per else None,
                "expected_wait_ms": round(self.expected_wait_s * 1000, 1)}


class Admission:
    """In-flight count and throughput of one capability, as the ingress sees them (see module doc).

    Throughput is completions per second of *busy* time (time with at least one request in flight),
    so an idle minute does not make the capability look slow. Until enough completions are known,
    up to `min_in_flight` requests are admitted without an estimate (see `check`).
    """

    def __init__(self, capability: str, *, latency_budget_s: float, max_in_flight: int, min_in_flight: int,
                 max_batch: int = 1, headroom: float = BUDGET_HEADROOM, window_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.capability = capability
        self.latency_budget_s = latency_budget_s
        self.planned_wait_s = latency_budget_s / headroom  # what admission lets the expected wait reach
        self.max_batch = max(1, max_batch)  # requests that can complete together (a batch per replica)
        self.max_in_flight = max_in_flight
        self.min_in_flight = min(min_in_flight, max_in_flight)
        self.window_s = window_s
        self._clock = clock
        self.in_flight = 0
        self.admitted = self.refused = self.timed_out = 0
        self._busy_total_s = 0.0
        self._busy_since: float | None = None
        self._done: deque[float] = deque(maxlen=512)  # busy-time stamps of recent completions

    def _busy_now(self) -> float:
        extra = self._clock() - self._busy_since if self._busy_since is not None else 0.0
        return self._busy_total_s + extra

    def service_s(self) -> float | None:
        """Busy seconds per request that admission plans with (None: not known yet): the mean over
        the kept completions (`mean_service_s`), or what the last `RECENT_BATCHES` x `max_batch`
        completions and the batch now running show, whichever is slower.

        The mean alone lags a slowdown by all the completions it keeps: when `read` went from 8 to
        32 clients, the refusals took CPU from it and its batches took twice as long, but 16
        completions are 35 s of `read`, so admission went on letting in the old rate's worth of
        requests, which then took 27-34 s against a 20 s budget. The last batches show a slowdown
        as soon as one batch is slow, and a batch still running past its time shows it before that
        batch ends (the request ahead of a new one waits for it whatever its size)."""
        mean = self.mean_service_s()
        if mean is None:
            return None
        return max(mean, self._recent_service_s())

    def _recent_service_s(self) -> float:
        """Per-request time of the last `RECENT_BATCHES` full batches (busy time from the completion
        before them to the last, over their count), and of the batch running now: it has run so
        far, and holds at most `max_batch` requests. Counted in completions, not in groups of
        completions: the answers of one batch reach the ingress one by one, more than
        `SAME_BATCH_S` apart when the box is busy, and a batch split that way looks like a batch
        of 1 that took the whole batch's time (the likely cause of `read`'s Retry-After of up to
        71 s when this estimate grouped completions)."""
        count = min(RECENT_BATCHES * self.max_batch, len(self._done) - 1)
        recent = (self._done[-1] - self._done[-1 - count]) / count if count > 0 else 0.0
        running = (self._busy_now() - self._done[-1]) / self.max_batch if self.in_flight and self._done else 0.0
        return max(recent, running)

    def _batch_ends(self) -> list[tuple[float, int]]:
        """(busy-time stamp, requests) of each batch among the kept completions, oldest first."""
        groups: list[list] = []
        for stamp in self._done:
            if groups and stamp - groups[-1][0] <= SAME_BATCH_S:
                groups[-1][0] = stamp
                groups[-1][1] += 1
            else:
                groups.append([stamp, 1])
        return [(stamp, n) for stamp, n in groups]

    def mean_service_s(self) -> float | None:
        """Measured busy seconds per completed request over the kept completions (None: not known yet).

        Over the completions of the last `window_s` of busy time, but never fewer than the last
        `KEEP_COMPLETIONS`: a capability whose batches take longer than the window (`read`: 3-4
        requests every 7-9 s under load) would otherwise lose its estimate exactly when it is slow,
        and be admitted up to its hard limit. Requests of one batch complete together, and the work
        of the oldest of them was done before the span starts, so only completions after the
        oldest batch count; counting all but one of them undercounted by a batch (a third low for
        batches of 3), and admission let in a third more than the budget allows."""
        now = self._busy_now()
        while len(self._done) > KEEP_COMPLETIONS and now - self._done[0] > self.window_s:
            self._done.popleft()
        if len(self._done) < MIN_COMPLETIONS:
            return None
        oldest = self._done[0]
        after_oldest = sum(1 for stamp in self._done if stamp - oldest > SAME_BATCH_S)
        span = now - oldest
        return span / after_oldest if after_oldest and span > 0 else None

    def mean_batch(self) -> float:
        """Requests per batch, as the completions show it (those that arrive together came from one
        batch; the oldest batch may be cut by the window, so it does not count); 1 until known."""
        sizes = [n for _, n in self._batch_ends()]
        return sum(sizes[1:]) / (len(sizes) - 1) if len(sizes) > 1 else 1.0

    def expected_wait_s(self) -> float:
        """Until a request admitted now is answered: the requests ahead of it, then its own batch,
        all of which it waits for (a batch of 3 `read` images takes 3 x its per-request time; with
        only its own share counted, admitted `read` requests took 21-27 s against a 20 s budget)."""
        per = self.service_s()
        return self._wait_s(per) if per is not None else 0.0

    def _wait_s(self, per_request_s: float) -> float:
        return (self.in_flight + self.mean_batch()) * per_request_s

    def check(self) -> None:
        """Raise Overloaded when one more request would wait longer than the budget.

        With nothing in flight a request is always admitted (nothing waits ahead of it). Until the
        service time is measured, up to `min_in_flight` are admitted (one full batch per replica),
        and no more: an unknown wait is not a short one. Once it is measured, the budget alone
        decides, the first batch included: with that floor kept under load, `see` admitted 16
        requests whatever its rate, and at 2-3 requests/s under a 400-client storm they took 7.8-12.6 s
        against its 3 s budget (issue 11)."""
        if self.in_flight >= self.max_in_flight:
            self._refuse(f"{self.in_flight} requests in flight (the limit is {self.max_in_flight})")
        if self.in_flight == 0:
            return
        per = self.service_s()
        if per is None:
            if self.in_flight < self.min_in_flight:
                return
            self._refuse(f"{self.in_flight} requests in flight before any service time is measured")
        wait = self._wait_s(per)
        if wait > self.planned_wait_s:
            self._refuse(f"expected wait {wait:.1f} s exceeds {self.planned_wait_s:.1f} s (the latency budget of "
                         f"{self.latency_budget_s:.1f} s with room for a slowdown)", per)

    def _refuse(self, why: str, per_request_s: float | None = None) -> None:
        self.refused += 1
        per = per_request_s if per_request_s is not None else (self.service_s() or 0.0)
        # by then the requests ahead that exceed the budget will have been served
        retry_s = max(1.0, (self.in_flight + 1) * per - self.planned_wait_s)
        raise Overloaded(f"{self.capability} is overloaded: {why}; retry later", retry_after_s=retry_s)

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Check, then count the request as in flight until the block ends."""
        self.check()
        with self.track():
            yield

    @contextmanager
    def track(self) -> Iterator[None]:
        self.admitted += 1
        if self.in_flight == 0:
            self._busy_since = self._clock()
        self.in_flight += 1
        served = True
        try:
            yield
        except InferenceTimeout:
            self.timed_out += 1
            # dropped from the queue unrun (or cut off): counting it as served would make the
            # capability look faster by every 504, and admit more exactly when it is late
            served = False
            raise
        finally:
            self.in_flight -= 1
            if served:
                self._done.append(self._busy_now())
            if self.in_flight == 0 and self._busy_since is not None:
                self._busy_total_s += self._clock() - self._busy_since
                self._busy_since = None

    def stats(self) -> AdmissionStats:
        return AdmissionStats(self.in_flight, self.admitted, self.refused, self.timed_out, self.service_s(),
                              self.expected_wait_s())


def client_timeout_s(headers, limit_s: float) -> float:
    """The deadline of this request: the capability's `timeout_s`, or less if the client asks."""
    raw = headers.get(TIMEOUT_HEADER)
    if raw is None:
        return limit_s
    try:
        asked = float(raw)
    except ValueError:
        raise InvalidInput(f"{TIMEOUT_HEADER} must be seconds, got {raw[:20]!r}", field=TIMEOUT_HEADER) from None
    if not asked > 0:
        raise InvalidInput(f"{TIMEOUT_HEADER} must be > 0", field=TIMEOUT_HEADER)
    return min(asked, limit_s)


class RouteDeadline:
    """Pure ASGI middleware: every route ends by its deadline (504), except the streaming ones.

    `deadline_s(path) -> float | None` names the deadline of a path (None: no deadline).
    `on_refused(path, ms)`, if given, hears how long each 503 took from the request's arrival here
    to the last byte of its answer handed back to Ray's proxy (the ingress's share of a refusal).
    """

    def __init__(self, app, deadline_s: Callable[[str], float | None],
                 on_refused: Callable[[str, float], None] | None = None) -> None:
        self.app = app
        self.deadline_s = deadline_s
        self.on_refused = on_refused

    async def __call__(self, scope, receive, send) -> None:
        limit_s = self.deadline_s(scope.get("path", "")) if scope["type"] == "http" else None
        if limit_s is None:
            await self.app(scope, receive, send)
            return
        started = False
        status = 0
        arrived_s = time.perf_counter()

        async def tracked_send(message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
            await send(message)
            if status == 503 and self.on_refused is not None and not message.get("more_body", False) \
                    and message["type"] == "http.response.body":
                self.on_refused(scope.get("path", ""), (time.perf_counter() - arrived_s) * 1000.0)

        try:
            async with asyncio.timeout(limit_s):
                await self.app(scope, receive, tracked_send)
        except TimeoutError:
            if started:  # the answer had begun: all that can be done is to end it
                raise
            body = json.dumps({"error": InferenceTimeout(f"no answer within {limit_s:.0f} s").to_dict()}).encode()
            await send({"type": "http.response.start", "status": 504,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


def route_capability(path: str, capabilities) -> str | None:
    """The capability whose route `path` is (`/v1/<name>...`), if `<name>` is among `capabilities`."""
    parts = path.strip("/").split("/")
    return parts[1] if len(parts) >= 2 and parts[0] == "v1" and parts[1] in capabilities else None


def route_deadline(path: str, *, capabilities: dict[str, float], request_timeout_s: float) -> float | None:
    """Deadline of `path`: None for streams, the capability's timeout (+ grace) for its routes."""
    if path in STREAMING_PATHS:
        return None
    name = route_capability(path, capabilities)
    return capabilities[name] + CAPABILITY_GRACE_S if name is not None else request_timeout_s


def capability_slots(cap) -> int:
    """The most requests the ingress lets in flight to one capability (its replicas' queues)."""
    return cap.max_ongoing_requests * cap.num_replicas


@dataclass(frozen=True)
class IngressLimits:
    max_ongoing_requests: int  # requests the ingress replica holds at once
    max_queued_requests: int  # requests Ray's proxy holds while it is full; beyond: 503 at once


def ingress_limits(config) -> IngressLimits:
    """The ingress's bound at Ray's proxy, from the config: every capability's admission slots plus
    `http.max_other_requests` (live event feeds hold a slot for as long as they are open; ops routes).

    Inside that bound the ingress's admission refuses by latency budget; past it the proxy answers
    503 + Retry-After without handing the request to the ingress at all, so a burst far beyond what
    the hub can serve costs neither the ingress's event loop nor a round trip to it. A small queue
    at the proxy absorbs requests that arrive together while slots are free (Ray counts a request
    as queued until it is assigned, and refuses past the queue even then)."""
    slots = sum(capability_slots(cap) for cap in config.capabilities.values())
    return IngressLimits(slots + config.http.max_other_requests, config.http.proxy_queue)


class AdmissionBoard:
    """The `Admission` of every capability of one ingress, with their metrics.

    >>> board = AdmissionBoard.from_config(serving_config)
    >>> with board.admit("see"): ...
    """

    def __init__(self, gates: dict[str, Admission], metrics=None) -> None:
        self.gates = gates
        self.metrics = metrics

    @classmethod
    def from_config(cls, config, metrics=None) -> AdmissionBoard:
        gates = {}
        for name, cap in config.capabilities.items():
            # admitted before a service time is measured: one full batch per replica. Not one per
            # worker: on a CPU a batch's time grows with its size, so a second batch waits about as
            # long as the first took, and whether that fits the budget is the measurement's call.
            floor = cap.batch.max_batch_size * cap.num_replicas
            gates[name] = Admission(name, latency_budget_s=cap.latency_budget_s, max_in_flight=capability_slots(cap),
                                    min_in_flight=floor, max_batch=floor)
        return cls(gates, metrics)

    @contextmanager
    def admit(self, capability: str) -> Iterator[Admission]:
        """Refuse (Overloaded) or admit one request to `capability`, counting the outcome."""
        gate = self.gates[capability]
        try:
            gate.check()
        except Overloaded:
            self._count(capability, "refused", gate)
            raise
        self._count(capability, "admitted", gate, entering=True)
        try:
            with gate.track():
                yield gate
        except InferenceTimeout:
            self._count(capability, "timed_out", gate)
            raise
        finally:
            self._count(capability, None, gate)

    def _count(self, capability: str, outcome: str | None, gate: Admission, entering: bool = False) -> None:
        if self.metrics is not None:
            self.metrics.outcome(capability, outcome, gate.in_flight + int(entering))

    def stage(self, capability: str, stage: str, ms: float) -> None:
        if self.metrics is not None:
            self.metrics.stage(capability, stage, ms)

    def refusal(self, path: str, ms: float) -> None:
        """A 503 answered on `path` after `ms` in the ingress (RouteDeadline's on_refused)."""
        name = route_capability(path, self.gates)
        if self.metrics is not None and name is not None:
            self.metrics.refusal(name, ms)

    def stats(self) -> dict[str, dict]:
        return {name: gate.stats().to_dict() for name, gate in sorted(self.gates.items())}
