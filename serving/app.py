"""Build the Ray Serve application from a `ServingConfig`.

>>> serve.run(build_app(ServingConfig.load(Path("configs/serving.yaml"))), name="hub")
"""

from __future__ import annotations

from ray.serve import Application
from ray.serve.config import BackpressureConfig
from ray.serve.deployment import Deployment

from serving.admission import ingress_limits
from serving.config import ServingConfig
from serving.deployment import CapabilityDeployment
from serving.ingress import IngressDeployment

PROXY_RETRY_AFTER_S = 2.0


def build_app(config: ServingConfig) -> Application:
    handles = {}
    for name, cap in config.capabilities.items():
        handles[name] = CapabilityDeployment.options(
            name=f"capability-{name}",
            num_replicas=cap.num_replicas,
            ray_actor_options={"num_cpus": cap.num_cpus, "num_gpus": cap.num_gpus},
            # the replica's batcher holds at most this many (queued + running); beyond, Ray queues
            # up to max_queued_requests at the ingress's handle, then answers 503
            max_ongoing_requests=cap.max_ongoing_requests,
            max_queued_requests=cap.max_queued_requests,
            user_config=cap.model_dump(),
            health_check_period_s=10,
            max_constructor_retry_count=2,
        ).bind(name, config.capability_of(name))
    if config.streams is not None:
        from serving.streams import StreamManager

        handles["streams"] = StreamManager.options(
            name="streams", ray_actor_options={"num_cpus": float(config.streams.get("num_cpus", 0.25))},
            max_ongoing_requests=256,
        ).bind(config.streams)
    return ingress_deployment(config).bind(config.model_dump(), **handles)


def ingress_deployment(config: ServingConfig) -> Deployment:
    """The ingress as deployed. Bounded at the proxy too (`serving.admission.ingress_limits`: the
    capabilities' admission slots plus the other routes' share, SSE feeds included): past it Ray's
    proxy itself answers 503, at once and with a `Retry-After` like the hub's own 503s (Ray's default
    sends none, and a client then retries at once)."""
    limits = ingress_limits(config)
    return IngressDeployment.options(
        name="ingress", ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=limits.max_ongoing_requests,
        max_queued_requests=limits.max_queued_requests,
        backpressure_config=BackpressureConfig(status_code=503, retry_after_s=PROXY_RETRY_AFTER_S))
