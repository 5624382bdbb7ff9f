"""What `GET /metrics` shows: the hub's own metrics and Ray Serve's request metrics.

Ray's metrics agent exports every Ray internal too (tasks, actors, object store, gRPC, the
controller's bookkeeping): 1.6-1.9 MB per scrape on a five-capability hub. `GET /metrics?all=true`
still returns all of it.

>>> select_families("# TYPE ray_tasks gauge\\nray_tasks 3\\n# TYPE ray_hub_requests_total counter\\n...")
"""

from __future__ import annotations

import re

# Families kept by name prefix; then the Serve families that describe Serve's own machinery dropped.
KEEP_PREFIXES = ("ray_hub_", "hub_", "ray_serve_")
DROP_PREFIXES = (
    "ray_serve_controller_", "ray_serve_long_poll", "ray_serve_autoscaling", "ray_serve_routing_stats",
    "ray_serve_record_autoscaling", "ray_serve_health_check", "ray_serve_proxy_status",
    "ray_serve_deployment_replica_starts", "ray_serve_replica_startup", "ray_serve_replica_initialization",
    "ray_serve_replica_reconfigure", "ray_serve_request_router_", "ray_serve_num_scheduling_tasks",
    "ray_serve_multiplexed_", "ray_serve_registered_multiplexed", "ray_serve_event_loop", "ray_serve_asyncio",
)
_SAMPLE_NAME = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)")
_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def keep_family(name: str) -> bool:
    return name.startswith(KEEP_PREFIXES) and not name.startswith(DROP_PREFIXES)


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
            out.append(line)
    return "\n".join(out) + "\n"
