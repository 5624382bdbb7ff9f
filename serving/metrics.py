"""Per-capability Prometheus metrics, exported through Ray's metrics agent next to Ray Serve's own
(`serve_*`) metrics; the ingress's `/metrics` shows both.

- `hub_requests{capability,status}`, `hub_request_latency_ms` — inside the capability replica
- `hub_batch_size`, `hub_batch_items` / `hub_batches` (exact totals: mean batch = items / batches)
- `hub_stage_ms{capability,stage}` (+ `hub_stage_time_ms`, its exact sum) — parse, queue, batch
  (decode + inference), serialise in the replica; body, handle (the call to the replica, Ray hops
  included) at the ingress
- `hub_queue_length{capability}` — requests waiting for a batch in the replica
- `hub_admission{capability,outcome}` — admitted / refused / timed_out at the ingress
- `hub_in_flight{capability}` — requests the ingress has in flight to the capability
- `hub_refusal_ms{capability}` — a 503's time in the ingress, from the request's arrival to the
  last byte of the answer (Ray's proxy adds its own: `serve_http_request_latency_ms{status_code="503"}`)
"""

from __future__ import annotations

from ray.serve import metrics

_LATENCY_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]
# Ray exports a histogram's sum as bucket midpoints x counts (its OpenTelemetry recorder), so
# boundaries at half-integers make sizes 1 and 2 exact; hub_batch_items / hub_batches are exact.
_REFUSAL_MS = [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000]
_BATCH = [0.5, 1.5, 2.5, 4.5, 8.5, 16.5, 32.5, 64.5, 128.5, 256.5]


class _StageTimes:
    """`hub_stage_ms` histogram (distribution, exact count) + `hub_stage_time_ms` counter (exact sum:
    Ray exports histogram sums as bucket midpoints)."""

    def __init__(self) -> None:
        self.histogram = metrics.Histogram(
            "hub_stage_ms", description="Time a request spends in each stage (ms)", boundaries=_LATENCY_MS,
            tag_keys=("capability", "stage"))
        self.total = metrics.Counter(
            "hub_stage_time_ms", description="Total time spent in each stage (ms)", tag_keys=("capability", "stage"))

    def observe(self, ms: float, tags: dict) -> None:
        self.histogram.observe(ms, tags=tags)
        self.total.inc(ms, tags=tags)


def _stage_histogram() -> _StageTimes:
    return _StageTimes()


class CapabilityMetrics:
    def __init__(self, capability: str) -> None:
        self.tags = {"capability": capability}
        self.requests = metrics.Counter(
            "hub_requests", description="Requests per capability and outcome", tag_keys=("capability", "status"))
        self.latency_ms = metrics.Histogram(
            "hub_request_latency_ms", description="Request latency inside the capability replica (ms)",
            boundaries=_LATENCY_MS, tag_keys=("capability",))
        self.batch_size = metrics.Histogram(
            "hub_batch_size", description="Requests per inference batch", boundaries=_BATCH, tag_keys=("capability",))
        # Counters as well as the histogram: exact sums that need no histogram arithmetic
        self.batches = metrics.Counter("hub_batches", description="Inference batches run", tag_keys=("capability",))
        self.batch_items = metrics.Counter(
            "hub_batch_items", description="Requests that went through inference batches", tag_keys=("capability",))
        self.stage_ms = _stage_histogram()
        self.queue_length = metrics.Gauge(
            "hub_queue_length", description="Requests waiting for a batch in the replica", tag_keys=("capability",))

    def observe_request(self, status: str, latency_ms: float) -> None:
        self.requests.inc(1, tags={**self.tags, "status": status})
        self.latency_ms.observe(latency_ms, tags=self.tags)

    def observe_batch(self, size: int, waits_s: list[float], run_s: float) -> None:
        self.batch_size.observe(size, tags=self.tags)
        self.batches.inc(1, tags=self.tags)
        self.batch_items.inc(size, tags=self.tags)
        for wait_s in waits_s:  # per request: every caller of the batch waits its whole run
            self.stage_ms.observe(wait_s * 1000.0, tags={**self.tags, "stage": "queue"})
            self.stage_ms.observe(run_s * 1000.0, tags={**self.tags, "stage": "batch"})

    def observe_stage(self, stage: str, ms: float) -> None:
        self.stage_ms.observe(ms, tags={**self.tags, "stage": stage})

    def observe_queue(self, length: int) -> None:
        self.queue_length.set(length, tags=self.tags)


class IngressMetrics:
    """Admission outcomes, in-flight counts and ingress stage times, per capability."""

    def __init__(self) -> None:
        self.admission = metrics.Counter(
            "hub_admission", description="Admission decisions at the ingress", tag_keys=("capability", "outcome"))
        self.in_flight = metrics.Gauge(
            "hub_in_flight", description="Requests in flight from the ingress to a capability", tag_keys=("capability",))
        self.stage_ms = _stage_histogram()
        self.refusal_ms = metrics.Histogram(
            "hub_refusal_ms", description="Time of a 503 in the ingress, arrival to answer sent (ms)",
            boundaries=_REFUSAL_MS, tag_keys=("capability",))

    def refusal(self, capability: str, ms: float) -> None:
        self.refusal_ms.observe(ms, tags={"capability": capability})

    def outcome(self, capability: str, outcome: str | None, in_flight: int) -> None:
        """Count an admission outcome (None: only the in-flight count changed)."""
        if outcome is not None:
            self.admission.inc(1, tags={"capability": capability, "outcome": outcome})
        self.in_flight.set(in_flight, tags={"capability": capability})

    def stage(self, capability: str, stage: str, ms: float) -> None:
        self.stage_ms.observe(ms, tags={"capability": capability, "stage": stage})
