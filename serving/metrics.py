"""Per-capability Prometheus metrics, exported through Ray's metrics agent next to Ray Serve's own
(`serve_*`) metrics; the ingress's `/metrics` shows both."""

from __future__ import annotations

from ray.serve import metrics

_LATENCY_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]
_BATCH = [1, 2, 4, 8, 16, 32, 64, 128, 256]


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

    def observe_request(self, status: str, latency_ms: float) -> None:
        self.requests.inc(1, tags={**self.tags, "status": status})
        self.latency_ms.observe(latency_ms, tags=self.tags)

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size, tags=self.tags)
