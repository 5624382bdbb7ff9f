"""What `GET /metrics` shows: the hub's own metrics and Ray Serve's request metrics.

Ray's metrics agent exports every Ray internal too (tasks, actors, object store, gRPC, Serve's
router and controller bookkeeping), each sample with ~200 bytes of labels that are the same for the
whole scrape: 1.6-1.9 MB per scrape on a five-capability hub. `GET /metrics?all=true` still returns
all of it, as the agent wrote it.

>>> select_families("# TYPE ray_tasks gauge\\nray_tasks 3\\n# TYPE ray_hub_requests_total counter\\n...")
"""

from __future__ import annotations

import re

# The hub's families, and the Serve families that describe requests and replicas: traffic,
# errors, latency, queues, health. Serve's router/controller/autoscaler internals stay out.
KEEP_PREFIXES = (
    "ray_hub_", "hub_",
    "ray_serve_num_http", "ray_serve_http_", "ray_serve_num_ongoing_http", "ray_serve_num_grpc", "ray_serve_grpc_",
    "ray_serve_deployment_request_counter", "ray_serve_deployment_error_counter",
    "ray_serve_deployment_processing_latency_ms", "ray_serve_deployment_queued_queries",
    "ray_serve_replica_processing_queries", "ray_serve_deployment_replica_healthy", "ray_serve_deployment_status",
    "ray_serve_application_status", "ray_serve_replica_utilization_percent",
)
# Labels with one value for the whole scrape (one node's agent, one Ray session): ~200 bytes a line.
CONSTANT_LABELS = ("SessionName", "Version", "NodeAddress", "otel_scope_name", "otel_scope_schema_url",
                   "otel_scope_version")
_LABEL = re.compile(r'(,?)\b(' + "|".join(CONSTANT_LABELS) + r')="(?:[^"\\]|\\.)*"')
_SAMPLE_NAME = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)")
_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def keep_family(name: str) -> bool:
    return name.startswith(KEEP_PREFIXES)


def drop_constant_labels(sample: str) -> str:
    """`name{a="1",SessionName="s",b="2"} 3` -> `name{a="1",b="2"} 3`."""
    if "{" not in sample:
        return sample
    head, _, rest = sample.partition("{")
    labels, _, value = rest.rpartition("}")
    kept = _LABEL.sub("", labels).lstrip(",")
    return f"{head}{{{kept}}}{value}" if kept else f"{head}{value}"


def _family(sample_name: str, families: set[str]) -> str:
    if sample_name in families:
        return sample_name
    for suffix in _SUFFIXES:
        if sample_name.endswith(suffix) and sample_name[: -len(suffix)] in families:
            return sample_name[: -len(suffix)]
    return sample_name


def select_families(text: str) -> str:
    """The Prometheus text exposition `text` with only the families `keep_family` accepts."""
    lines = text.splitlines()
    families = {ln.split()[2] for ln in lines if ln.startswith(("# TYPE ", "# HELP ")) and len(ln.split()) > 2}
    out = []
    for line in lines:
        if line.startswith("#"):
            parts = line.split()
            if len(parts) > 2 and parts[1] in ("TYPE", "HELP") and not keep_family(parts[2]):
                continue
            out.append(line)
            continue
        match = _SAMPLE_NAME.match(line)
        if match is None or keep_family(_family(match.group(1), families)):
            out.append(drop_constant_labels(line))
    return "\n".join(out) + "\n"
