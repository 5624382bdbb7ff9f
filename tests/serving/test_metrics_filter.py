"""`GET /metrics` keeps the hub's and Ray Serve's request families and drops Ray's internals."""

from __future__ import annotations

import pytest

from serving.metrics_filter import drop_constant_labels, keep_family, select_families

SCRAPE = """\
# HELP ray_tasks Current number of tasks in each state.
# TYPE ray_tasks gauge
ray_tasks{State="RUNNING",Name="ServeReplica"} 5.0
# HELP ray_hub_requests_total Requests per capability and outcome
# TYPE ray_hub_requests_total counter
ray_hub_requests_total{capability="see",status="ok"} 3.0
# HELP ray_serve_http_request_latency_ms The end-to-end latency of HTTP requests
# TYPE ray_serve_http_request_latency_ms histogram
ray_serve_http_request_latency_ms_bucket{route="/",le="5.0"} 1.0
ray_serve_http_request_latency_ms_sum{route="/"} 4.2
ray_serve_http_request_latency_ms_count{route="/"} 1.0
# HELP ray_serve_controller_control_loop_duration_s The control loop time.
# TYPE ray_serve_controller_control_loop_duration_s gauge
ray_serve_controller_control_loop_duration_s 0.01
# HELP ray_grpc_server_req_process_time_ms Request latency in grpc server
# TYPE ray_grpc_server_req_process_time_ms histogram
ray_grpc_server_req_process_time_ms_bucket{Method="GetObject",le="1"} 7.0
"""


@pytest.mark.parametrize(("name", "kept"), [
    ("ray_hub_requests_total", True),
    ("ray_hub_request_latency_ms", True),
    ("ray_serve_num_http_requests", True),
    ("ray_serve_deployment_processing_latency_ms", True),
    ("ray_serve_controller_control_loop_duration_s", False),
    ("ray_serve_long_poll_host_get_object", False),
    ("ray_serve_router_args_resolution_latency_ms", False),
    ("ray_tasks", False),
    ("ray_object_store_memory", False),
    ("ray_grpc_server_req_process_time_ms", False),
])
def test_keep_family(name, kept):
    assert keep_family(name) is kept


def test_select_families_keeps_whole_families_and_their_samples():
    out = select_families(SCRAPE).splitlines()
    assert "ray_hub_requests_total{capability=\"see\",status=\"ok\"} 3.0" in out
    assert sum(line.startswith("ray_serve_http_request_latency_ms_") for line in out) == 3
    assert "# TYPE ray_serve_http_request_latency_ms histogram" in out
    assert not any("ray_tasks" in line or "controller" in line or "grpc" in line for line in out)


@pytest.mark.parametrize(("sample", "expected"), [
    ('x{a="1",SessionName="s",b="2"} 3.0', 'x{a="1",b="2"} 3.0'),
    ('x{SessionName="s \\"quoted\\"",deployment="see"} 1', 'x{deployment="see"} 1'),
    ('x{Version="2.60.0",otel_scope_name="ray",otel_scope_version=""} 1', "x 1"),
    ("x 1", "x 1"),
])
def test_labels_that_are_constant_within_a_scrape_are_dropped(sample, expected):
    assert drop_constant_labels(sample) == expected
