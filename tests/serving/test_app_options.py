"""The application's deployment options that no unit test of a replica sees (serving/app.py)."""

from __future__ import annotations

from serving.app import PROXY_RETRY_AFTER_S, ingress_deployment


def test_the_proxy_refuses_past_the_ingress_bound_with_503_and_retry_after():
    ingress = ingress_deployment()
    assert 0 < ingress.max_queued_requests <= 1024  # a bounded wait in front of the ingress, not Ray's unbounded -1
    assert ingress.backpressure_config.status_code == 503
    assert ingress.backpressure_config.retry_after_s == PROXY_RETRY_AFTER_S >= 1
