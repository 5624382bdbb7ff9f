"""The application's deployment options that no unit test of a replica sees (serving/app.py), and
the ingress's bound at Ray's proxy (serving/admission.py `ingress_limits`)."""

from __future__ import annotations

import pytest

from serving.admission import AdmissionBoard, ingress_limits
from serving.app import PROXY_RETRY_AFTER_S, ingress_deployment
from serving.config import ServingConfig


def _config(http: dict | None = None, **capabilities: dict) -> ServingConfig:
    return ServingConfig.model_validate({"http": http or {}, "capabilities": {
        name: {"model": "models:/yolov8n-coco@champion", **options} for name, options in capabilities.items()}})


@pytest.mark.parametrize(("config", "ongoing", "queued"), [
    # every capability's admission slots (max_ongoing_requests x replicas) + the other routes' share
    (_config(see={"max_ongoing_requests": 32}), 32 + 64, 64),
    (_config(see={"max_ongoing_requests": 32, "num_replicas": 2}, reason={"max_ongoing_requests": 64}), 64 + 64 + 64, 64),
    (_config({"max_other_requests": 8, "proxy_queue": 4}, see={"max_ongoing_requests": 10}), 10 + 8, 4),
])
def test_the_ingress_bound_is_the_admission_slots_plus_the_other_routes(config, ongoing, queued):
    limits = ingress_limits(config)
    assert (limits.max_ongoing_requests, limits.max_queued_requests) == (ongoing, queued)
    board = AdmissionBoard.from_config(config)
    # the proxy never refuses a capability request its admission would still take
    share = limits.max_ongoing_requests - config.http.max_other_requests
    assert share == sum(gate.max_in_flight for gate in board.gates.values())
    ingress = ingress_deployment(config)
    assert (ingress.max_ongoing_requests, ingress.max_queued_requests) == (ongoing, queued)


def test_the_shipped_config_bounds_the_ingress_well_below_rays_defaults():
    from pathlib import Path

    config = ServingConfig.load(Path(__file__).resolve().parents[2] / "configs" / "serving.yaml")
    limits = ingress_limits(config)
    # 400 clients on one capability: most are refused by the proxy, not carried into the ingress
    assert limits.max_ongoing_requests + limits.max_queued_requests < 400
    assert limits.max_ongoing_requests > config.capabilities["see"].max_ongoing_requests


def test_the_proxy_refuses_past_the_ingress_bound_with_503_and_retry_after():
    ingress = ingress_deployment(_config(see={}))
    assert 0 < ingress.max_queued_requests <= 1024  # a bounded wait in front of the ingress, not Ray's unbounded -1
    assert ingress.backpressure_config.status_code == 503
    assert ingress.backpressure_config.retry_after_s == PROXY_RETRY_AFTER_S >= 1


@pytest.mark.parametrize(("replicas", "batch", "floor"), [
    (1, {"max_batch_size": 16, "workers": 2}, 16),  # one batch per replica, not one per worker
    (2, {"max_batch_size": 8, "workers": 1}, 16),
])
def test_admission_takes_one_full_batch_per_replica_until_measured(replicas, batch, floor):
    gate = AdmissionBoard.from_config(_config(see={"num_replicas": replicas, "batch": batch})).gates["see"]
    assert gate.min_in_flight == floor
    assert gate.max_in_flight == 64 * replicas
