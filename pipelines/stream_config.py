"""Typed configuration of cameras (YAML `configs/streams.yaml` and `POST /v1/streams`), validated
once and turned into the frozen objects the pipeline runs on.

>>> spec = CameraSpec.model_validate({"camera_id": "cam17", "url": "rtsp://10.0.0.17/s1",
...     "zones": [{"zone_id": "kerb", "points": [[0, .7], [1, .7], [1, 1], [0, 1]], "normalized": True}],
...     "rules": [{"kind": "illegal_parking", "zone_id": "kerb", "min_dwell_s": 180}]})
>>> plan = spec.plan()          # CameraPlan(source=SourceConfig, mapping, tracker, rules)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from hub.contract import WireModel
from hub.errors import InvalidInput
from hub.outbound import OutboundPolicy, check_ffmpeg_options
from hub.yamlconfig import read_yaml_mapping
from pipelines.calibration import Calibration, CalibrationSpec
from pipelines.capacity import CapacityPolicy
from pipelines.decode import DecodeOptions
from pipelines.retention import RetentionSpec
from pipelines.rules import ParkingRule, Rule, SpillRule, StaticChange, wanted_classes
from pipelines.rules.presets import PARKING_PRESETS, resolve_parking
from pipelines.sources import SourceConfig
from pipelines.track import TrackerConfig
from pipelines.zones import VEHICLE_CLASSES, ClassMapping, Zone

DEFAULT_MODEL = "models:/yolov8n-coco@champion"




class ZoneSpec(WireModel):
    zone_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    points: list[tuple[float, float]] = Field(min_length=3, max_length=256)
    normalized: bool = False  # points are fractions 0..1 of width/height


class ParkingSpec(WireModel):
    """`preset` (`highway-stop`, `urban-no-parking`; see pipelines/rules/presets.py) fills the fields
    not given. `method: stop` judges by filtered road-plane speed (km/h with the camera's
    `calibration`), `dwell` by pixel motion (`max_motion_px`); `min_dwell_s` is the zone's limit."""

    kind: Literal["illegal_parking"] = "illegal_parking"
    zone_id: str
    preset: Literal[tuple(PARKING_PRESETS)] | None = None  # type: ignore[valid-type]
    method: Literal["dwell", "stop"] = "dwell"
    min_dwell_s: float = Field(180.0, gt=0)
    max_motion_px: float = Field(20.0, gt=0)
    max_speed_kmh: float = Field(10.0, gt=0, le=60)
    min_stopped_s: float = Field(2.0, gt=0, le=3600)
    resume_s: float = Field(1.0, ge=0, le=600)
    resume_speed_kmh: float | None = Field(None, gt=0, le=120)  # None: 2 x max_speed_kmh
    reassociate_m: float = Field(4.0, gt=0, le=50)
    exit_grace_s: float = Field(5.0, ge=0)
    # `method: stop`: boxes this close (fraction of the frame) to its left, right or bottom edge are cut
    # off, and a vehicle leaving the view there reads as standing (pipelines/rules/stop.py); 0 keeps them
    edge_margin_frac: float = Field(0.02, ge=0, le=0.2)
    classes: list[str] = sorted(VEHICLE_CLASSES)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data):
        # Resolved here, not at plan time: the stored spec (cameras.json) then carries the values.
        if isinstance(data, dict) and data.get("preset") is not None:
            return resolve_parking(data["preset"], data)
        return data

    def rule(self, zone: Zone, calibration: Calibration | None) -> ParkingRule:
        values = {k: getattr(self, k) for k in ParkingSpec.model_fields if k not in ("kind", "zone_id", "preset")}
        values["classes"] = frozenset(self.classes)
        return ParkingRule(zone=zone, calibration=calibration, **values)


class SpillSpec(WireModel):
    kind: Literal["spill"] = "spill"
    zone_id: str
    min_s: float = Field(10.0, gt=0)
    max_motion_px: float = Field(20.0, gt=0)
    exit_grace_s: float = Field(3.0, ge=0)
    classes: list[str] = []  # detector classes that are debris, where the model has any
    static_change: bool = True  # the model-free detector; works without a debris class
    static_interval_s: float = Field(0.5, ge=0)  # how often the static-change detector looks
    diff_threshold: float = Field(28.0, gt=0, le=255)
    background_rate_per_s: float = Field(2.0, gt=0)
    min_area_frac: float = Field(0.0008, gt=0, lt=1)
    max_area_frac: float = Field(0.05, gt=0, le=1)


RuleSpec = Annotated[ParkingSpec | SpillSpec, Field(discriminator="kind")]


class ClassesSpec(WireModel):
    """Per-camera reading of detector classes: `rename` e.g. {"cell phone": "car"} for overhead views."""

    rename: dict[str, str] = {}
    # Lower than a bare ClassMapping's 0.25 on purpose: ByteTrack's second association pass keeps
    # tracks alive with the low boxes (it splits them at high_conf_det_threshold itself).
    min_score: float = Field(0.1, ge=0, le=1)


class TrackerSpec(WireModel):
    """ByteTrack's settings (`pipelines.track.TrackerConfig`, whose defaults these are: one source)."""

    lost_track_s: float = Field(TrackerConfig.lost_track_s, gt=0)
    track_activation_threshold: float = Field(TrackerConfig.track_activation_threshold, ge=0, le=1)
    high_conf_det_threshold: float = Field(TrackerConfig.high_conf_det_threshold, ge=0, le=1)
    minimum_iou_threshold: float = Field(TrackerConfig.minimum_iou_threshold, ge=0, le=1)
    minimum_consecutive_frames: int = Field(TrackerConfig.minimum_consecutive_frames, ge=1)


# A URL never holds control characters (RFC 3986); a NUL reached FFmpeg and the OS as a 500.
NO_CONTROL_CHARS = r"^[^\x00-\x1f\x7f]+$"


class WebhookSpec(WireModel):
    """A webhook receiver with its own signing key (`X-Hub-Signature-256`). `secret` is best given
    as a `${HUB_WEBHOOK_<NAME>}` reference, resolved from the environment at run time; a literal
    secret works but is not written to `cameras.json`."""

    url: str = Field(min_length=1, max_length=2048, pattern=NO_CONTROL_CHARS)
    secret: str | None = Field(None, min_length=16, max_length=512)


def webhook_specs(items: list[str | WebhookSpec]) -> list[WebhookSpec]:
    return [item if isinstance(item, WebhookSpec) else WebhookSpec(url=item) for item in items]


class CameraSpec(WireModel):
    """One camera: where to read it, how often, which model, zones and rules.

    Credentials in `url` are best given as references, `rtsp://${HUB_CAMERA_CAM17_USER}:${HUB_CAMERA_CAM17_PASS}@host/s`,
    resolved from the environment each time the camera connects; only references are persisted.
    """

    camera_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    url: str = Field(min_length=1, max_length=2048, pattern=NO_CONTROL_CHARS)
    loop: bool = False
    realtime: bool | None = None  # files: paced like a camera (default) or as fast as analysis goes
    analysis_fps: float = Field(5.0, gt=0, le=60)
    model: str | None = None  # a registered detector (e.g. a fine-tune for overhead views); None: default
    classes: ClassesSpec = ClassesSpec()
    tracker: TrackerSpec = TrackerSpec()
    zones: list[ZoneSpec] = []
    rules: list[RuleSpec] = []
    calibration: CalibrationSpec | None = None  # image -> road plane: rules then measure metres and km/h
    webhooks: list[str | WebhookSpec] = Field([], max_length=16)
    max_failures: int | None = Field(None, ge=1)  # None: the streams config's `max_failures`
    options: dict[str, str] = Field({}, max_length=16)  # FFmpeg options from an allow-list, e.g. {"rtsp_transport": "udp"}

    @field_validator("webhooks")
    @classmethod
    def _urls(cls, value: list[str | WebhookSpec]) -> list[str | WebhookSpec]:
        for spec in webhook_specs(value):
            if not spec.url.startswith(("http://", "https://")):
                raise ValueError(f"webhook {spec.url!r} must be an http(s) URL")
        return value

    @field_validator("options")
    @classmethod
    def _ffmpeg_options(cls, value: dict[str, str]) -> dict[str, str]:
        try:
            return check_ffmpeg_options(value)
        except InvalidInput as exc:  # pydantic reports it as a 400 on `options`, naming the option
            raise ValueError(exc.message) from None

    @field_validator("model")
    @classmethod
    def _model_ref(cls, value: str | None) -> str | None:
        if value is not None:
            from registry.ref import ModelRef

            ModelRef.parse(value)
        return value

    @model_validator(mode="after")
    def _zones_exist(self) -> CameraSpec:
        ids = [z.zone_id for z in self.zones]
        if len(set(ids)) != len(ids):
            raise ValueError("zone ids must be unique per camera")
        for rule in self.rules:
            if rule.zone_id not in ids:
                raise ValueError(f"rule {rule.kind} names zone {rule.zone_id!r}, which this camera lacks")
        return self

    def plan(self) -> CameraPlan:
        zones = {z.zone_id: Zone(z.zone_id, z.points, normalized=z.normalized) for z in self.zones}
        calibration = self.calibration.build() if self.calibration is not None else None
        rules: list[Rule] = []
        for r in self.rules:
            if isinstance(r, ParkingSpec):
                rules.append(r.rule(zones[r.zone_id], calibration))
            else:
                static = StaticChange(enabled=r.static_change, interval_s=r.static_interval_s,
                                      diff_threshold=r.diff_threshold,
                                      background_rate_per_s=r.background_rate_per_s, min_area_frac=r.min_area_frac,
                                      max_area_frac=r.max_area_frac)
                rules.append(SpillRule(zone=zones[r.zone_id], min_s=r.min_s, max_motion_px=r.max_motion_px,
                                       exit_grace_s=r.exit_grace_s, classes=frozenset(r.classes), static=static))
        source = SourceConfig(url=self.url, loop=self.loop, analysis_fps=self.analysis_fps, realtime=self.realtime,
                              max_failures=self.max_failures, options=dict(self.options))
        mapping = ClassMapping(rename=dict(self.classes.rename), keep=wanted_classes(rules),
                               min_score=self.classes.min_score)
        t = self.tracker
        tracker = TrackerConfig(frame_rate_hz=self.analysis_fps, lost_track_s=t.lost_track_s,
                                track_activation_threshold=t.track_activation_threshold,
                                high_conf_det_threshold=t.high_conf_det_threshold,
                                minimum_iou_threshold=t.minimum_iou_threshold,
                                minimum_consecutive_frames=t.minimum_consecutive_frames)
        urls = tuple(spec.url for spec in webhook_specs(self.webhooks))
        return CameraPlan(self.camera_id, source, mapping, tracker, tuple(rules), urls, self.model)


@dataclass(frozen=True)
class CameraPlan:
    """Everything the stream loop needs for one camera, validated and frozen."""

    camera_id: str
    source: SourceConfig
    mapping: ClassMapping
    tracker: TrackerConfig
    rules: tuple[Rule, ...]
    webhooks: tuple[str, ...] = ()
    model: str | None = None


class BatchSpec(WireModel):
    max_batch_size: int = Field(16, ge=1, le=512)
    max_wait_ms: float = Field(15.0, ge=0, le=10_000)
    max_queue: int = Field(512, ge=1)
    inflight_per_camera: int = Field(2, ge=1, le=8)  # frames of one camera in the batcher at once
    max_age_ms: float | None = Field(2000.0, gt=0)  # a frame waiting longer is dropped: latency stays bounded
    max_batch_ms: float | None = Field(1000.0, gt=0)  # batches cut to about this long (a slow CPU runs smaller ones)


class OutboundSpec(WireModel):
    """Where cameras and webhooks may connect (see `hub/outbound.py`). Private, loopback and
    link-local destinations are refused unless `allow` lists them (CIDRs or host names,
    `*.city.lan` for a domain)."""

    allow: list[str] = []
    camera_http: bool = False  # MJPEG cameras over http(s); rtsp/rtsps are always allowed
    webhook_http: bool = False  # plain-http webhook receivers; https is always allowed

    def policy(self) -> OutboundPolicy:
        return OutboundPolicy(allow=tuple(self.allow), camera_http=self.camera_http, webhook_http=self.webhook_http)


class DecodeSpec(WireModel):
    """How cameras are decoded (see pipelines/decode.py and pipelines/nvdec.py). `backend`: "auto"
    decodes on the GPU's NVDEC when the box has a CUDA GPU and PyNvVideoCodec (the `nvdec` extra),
    else on the CPU; "nvdec" refuses a camera where it cannot run; "cpu" never uses the GPU."""

    max_side_px: int | None = Field(640, ge=32, le=8192)  # analysis image size: the detector's input (None: native)
    threads: int = Field(1, ge=0, le=64)  # FFmpeg threads per camera (0: FFmpeg's default, one per core)
    skip_frames: bool = True  # let the decoder drop frames the analysis rate does not need
    backend: Literal["auto", "nvdec", "cpu"] = "auto"

    def options(self) -> DecodeOptions:
        return DecodeOptions(max_side_px=self.max_side_px, threads=self.threads, skip_frames=self.skip_frames,
                             backend=self.backend)


class CapacitySpec(WireModel):
    """What happens when cameras ask more than the box can analyse (see pipelines/capacity.py)."""

    admission: Literal["accept", "warn", "refuse"] = "warn"  # a camera added while over capacity
    capacity_fps: float | None = Field(None, gt=0)  # analysed frames/s the box serves (bench/streams_e2e.py)
    interval_s: float = Field(2.0, gt=0, le=60)

    def policy(self) -> CapacityPolicy:
        return CapacityPolicy(admission=self.admission, capacity_fps=self.capacity_fps, interval_s=self.interval_s)


class StreamsConfig(WireModel):
    """Options of the stream manager (the `streams:` section of the serving config, or a YAML file).

    `file_roots`: folders a file source may be read from (besides `../shared/data` and the hub's
    data dir) — an API caller cannot make the hub read arbitrary files.
    """

    model: str = DEFAULT_MODEL
    device: str = "auto"
    model_poll_s: float = Field(5.0, gt=0)  # how often camera detectors check where their alias points
    rect: bool = True  # letterbox to the frame's aspect (less compute for 16:9 cameras)
    batch: BatchSpec = BatchSpec()
    decode: DecodeSpec = DecodeSpec()
    capacity: CapacitySpec = CapacitySpec()
    cameras: list[CameraSpec] = []
    webhooks: list[str | WebhookSpec] = []
    outbound: OutboundSpec = OutboundSpec()
    max_failures: int = Field(30, ge=1)  # failed connection attempts in a row before a camera is `failed`
    file_roots: list[Path] = []
    persist_cameras: bool = True  # cameras added through the API come back after a restart
    retention: RetentionSpec = RetentionSpec()  # age and size limits of events, snapshots, deliveries
    max_episode_s: float | None = Field(86_400.0, gt=0)  # an episode open longer ends as `expired`
    include: Path | None = None  # another YAML file with `cameras:` / `webhooks:` to merge in
    num_cpus: float = 0.25  # read by serving/app.py for the deployment's actor options
    # Where cameras run (serving/shards.py): 0 in the manager's own process (one box); N shard
    # actors spread over the Ray cluster; `auto` one per GPU of the cluster (0 without a GPU).
    shards: int | Literal["auto"] = Field(0, ge=0, le=256)
    shard_cpus: float = Field(1.0, ge=0)
    shard_gpus: float = Field(0.5, ge=0)  # with GPUs: a shard shares its GPU with the HTTP `see` replica
    shard_resources: dict[str, float] = {}  # custom Ray resources a shard needs (e.g. one per node)

    @classmethod
    def load(cls, path: Path) -> StreamsConfig:
        return cls.model_validate(read_yaml_mapping(path, "streams config"))

    def resolved(self) -> StreamsConfig:
        """This config with `include` merged in (cameras appended, webhooks added)."""
        if self.include is None:
            return self
        other = StreamsConfig.load(self.include)
        return self.model_copy(update={"cameras": [*self.cameras, *other.cameras],
                                       "webhooks": [*self.webhooks, *other.webhooks], "include": None})
