"""Typed serving configuration loaded from YAML (`configs/serving.yaml`), validated at start-up.

>>> cfg = ServingConfig.load(Path("configs/serving.yaml")); cfg.capabilities["see"].batch.max_batch_size
8
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from hub.contract import WireModel
from hub.yamlconfig import read_yaml_mapping
from registry.ref import ModelRef


class BatchConfig(WireModel):
    max_batch_size: int = Field(8, ge=1, le=512)
    max_wait_ms: float = Field(10.0, ge=0, le=10_000)
    # batches in flight at once per replica: while one is in the model the next one is decoded
    workers: int = Field(2, ge=1, le=16)
    # images: a batch holds at most this many pixels (one bigger image still runs, alone); 0: no cap
    max_batch_pixels: int = Field(0, ge=0)


class CapabilityConfig(WireModel):
    model: str  # models:/<name>@<alias> or models:/<name>/<version>
    # The catalogue capability this deployment runs; None: the deployment's own name. A second
    # deployment of one capability with another model, e.g. `speak-zh: {capability: speak, ...}`.
    capability: str | None = None
    batch: BatchConfig = BatchConfig()
    num_cpus: float = Field(0.25, gt=0)  # fractional so every capability schedules on 2 cores
    num_gpus: float = Field(0, ge=0)
    num_replicas: int = Field(1, ge=1)
    max_ongoing_requests: int = Field(64, ge=1)
    max_queued_requests: int = Field(256, ge=-1)
    poll_s: float = Field(5.0, gt=0)  # how often the replica checks where the alias points
    timeout_s: float = Field(120.0, gt=0)  # past this a request gets 504 and leaves the queue
    # admission: refuse (503 + Retry-After) when the expected wait would exceed this
    latency_budget_s: float = Field(10.0, gt=0)
    # CPU priority (Linux nice) of the replica's process. Ray starts every worker at nice 15, its
    # HTTP proxy and the ingress included; at 19 inference yields the cores to them, so admission
    # answers and refusals are not queued behind model work that takes every core. 0: as Ray left it.
    cpu_nice: int = Field(19, ge=0, le=19)
    device: str = "auto"

    @field_validator("model")
    @classmethod
    def _ref(cls, value: str) -> str:
        ModelRef.parse(value)
        return value

    @model_validator(mode="after")
    def _budget_within_timeout(self) -> CapabilityConfig:
        if self.latency_budget_s > self.timeout_s:
            raise ValueError(f"latency_budget_s ({self.latency_budget_s}) must not exceed timeout_s ({self.timeout_s}): "
                             "admitted requests would time out")
        return self


class ApiKey(WireModel):
    name: str
    sha256: str  # hex digest of the key; the key itself is never stored
    revoked: bool = False


class AuthConfig(WireModel):
    required: bool | None = None  # None: required beyond loopback, or behind http.trusted_proxies
    keys: list[ApiKey] = []


class HttpConfig(WireModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_body_mib: float = Field(20.0, gt=0)
    # Host header values the hub answers (names or *.domain); loopback names always. Empty: any
    # Host when bound beyond loopback, loopback names only when bound to loopback.
    allowed_hosts: list[str] = []
    # Addresses of reverse proxies (a TLS gateway) in front of the hub. Set, API keys are required
    # even on loopback: the proxy makes loopback reachable from the network.
    trusted_proxies: list[str] = []
    # Deadline of every route except the capabilities (their own timeout_s) and the live event feed
    # (none); enforced by the ingress, not by Ray's proxy, whose timeout would also cut SSE streams.
    request_timeout_s: float = Field(300.0, gt=0)
    # The ingress holds at most the capabilities' admission slots plus this many other requests
    # (live event feeds, which stay open, and ops routes); beyond, Ray's proxy queues up to
    # `proxy_queue` requests, then answers 503 + Retry-After itself, without the ingress
    # (serving.admission.ingress_limits). Ray counts a request as queued until it is assigned, even
    # while the ingress has room, so the queue must hold a burst that arrives at once.
    max_other_requests: int = Field(64, ge=1)
    proxy_queue: int = Field(64, ge=1)

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mib * 1024 * 1024)


class RayConfig(WireModel):
    num_cpus: int | None = None
    dashboard: bool = False
    metrics_export_port: int = 8090


class HotlineServing(WireModel):
    # reply language -> the deployment (of capability speak) that speaks replies in it; any other
    # language: the `speak` deployment. E.g. {zh: speak-zh} for the neural Mandarin voice.
    speak: dict[str, str] = {}


class ServingConfig(WireModel):
    http: HttpConfig = HttpConfig()
    auth: AuthConfig = AuthConfig()
    ray: RayConfig = RayConfig()
    capabilities: dict[str, CapabilityConfig]
    streams: dict | None = None  # options of the stream manager (see configs/streams.yaml)
    hotline: HotlineServing = HotlineServing()

    def capability_of(self, name: str) -> str:
        """The catalogue capability that deployment `name` runs."""
        return self.capabilities[name].capability or name

    @model_validator(mode="after")
    def _hotline_voices_are_speak(self) -> ServingConfig:
        for language, name in self.hotline.speak.items():
            if name not in self.capabilities or self.capability_of(name) != "speak":
                raise ValueError(f"hotline.speak.{language}: {name!r} is not a speak deployment of this config "
                                 f"(capabilities: {sorted(self.capabilities)})")
        return self

    @property
    def auth_required(self) -> bool:
        if self.auth.required is not None:
            return self.auth.required
        return not self.http.loopback or bool(self.http.trusted_proxies)

    @classmethod
    def load(cls, path: Path) -> ServingConfig:
        return cls.model_validate(read_yaml_mapping(path, "serving config"))
