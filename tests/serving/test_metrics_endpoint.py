"""`GET /metrics` through the session hub: the hub's and Ray Serve's request metrics, not Ray's internals."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.serve


@pytest.mark.parametrize(("query", "must_have", "must_not_have"), [
    ("", ["ray_hub_requests_total", "ray_serve_"], ["ray_tasks", "ray_object_store", "ray_grpc_"]),
    ("?all=true", ["ray_hub_requests_total", "ray_serve_", "ray_tasks"], []),
])
def test_metrics_families(hub_server, query, must_have, must_not_have):
    with hub_server.client() as c:
        assert c.post("/v1/reason", json={"text": "小区门口道路积水严重"}).status_code == 200
        deadline = time.monotonic() + 60  # Ray's agent exports what replicas recorded every few seconds
        while "ray_hub_requests_total" not in (text := c.get(f"/metrics{query}").text) and time.monotonic() < deadline:
            time.sleep(1)
    for name in must_have:
        assert name in text, name
    for name in must_not_have:
        assert f"\n{name}" not in text and f"# TYPE {name}" not in text, name


def test_default_scrape_is_a_fraction_of_everything(hub_server):
    with hub_server.client() as c:
        c.post("/v1/reason", json={"text": "路灯不亮"})
        selected, everything = len(c.get("/metrics").content), len(c.get("/metrics?all=true").content)
    print(f"\n/metrics {selected} bytes, /metrics?all=true {everything} bytes")
    assert selected < everything / 2
