"""The detector's artifact directory: `model.onnx` + `hub.json` (+ a small `sample.jpg`).

`prepare_artifact(onnx_path, out_dir)` turns ANY Ultralytics YOLO detection export (the shared
int8 YOLOv8n, or a user's own fine-tune) into the form the hub serves: weights dequantised to
fp32 (when quantised), the Detect head cut before its decode so batch, height and width are free,
and everything a loader needs recorded in `hub.json`:

    {"capability": "see", "format": "yolo-onnx",
     "metadata": {"names": "[\"person\", ...]", "imgsz": "640,640", "stride": 32, "strides": "8,16,32",
                  "reg_max": 16, "output_format": "raw-heads", "letterbox_pad": 114,
                  "normalize": "rgb/255", "rect": false, "torch_arch": "yolov8n.yaml", ...}}

`DetectorSpec.read(artifact_dir)` is the only reader of that file.

>>> prepare_default(Path("../shared"), Path("/tmp/yolov8n-coco"))["num_classes"]
80
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from hub.errors import ModelLoadError
from models.detection.onnx_graph import (
    dequantize_conv_integer,
    is_quantized,
    make_batch_dynamic,
    split_yolo_head,
    yolo_metadata,
)

CAPABILITY = "see"
ARTIFACT_FORMAT = "yolo-onnx"
MODEL_FILE = "model.onnx"
SAMPLE_FILE = "sample.jpg"
DEFAULT_ONNX = Path("models/detection/yolov8n-coco-int8.onnx")  # inside ../shared
DEFAULT_SAMPLE = Path("data/images/bus.jpg")
# Where a user with a network gets the same weights (see `download_weights`).
YOLOV8N_URL = "https://github.com/ultralytics/assets/releases/download/v8.4.0/yolov8n.pt"
# `torch_arch` names one of Ultralytics' built-in model YAMLs, never a file or YAML text: a YAML
# from the artifact would reach Ultralytics' model parser, which resolves names and evaluates args.
_BUILTIN_ARCH = re.compile(r"^yolo(v?\d{1,2})[nsmlx]?(-[a-z0-9]{1,12})?\.yaml$")
_MODEL_FILE = re.compile(r"^[A-Za-z0-9_.-]{1,128}\.onnx$")


@dataclass(frozen=True)
class DetectorSpec:
    """What a loader needs to run one registered YOLO-format detector."""

    names: tuple[str, ...]
    imgsz: tuple[int, int]  # (h, w) the model was trained/exported at
    stride: int = 32
    strides: tuple[int, ...] = (8, 16, 32)
    reg_max: int = 16
    output_format: str = "raw-heads"  # "raw-heads" (decode on device) | "decoded" ([B, 4+nc, N] output0)
    letterbox_pad: int = 114
    normalize: str = "rgb/255"
    rect: bool = False  # default input shaping: square imgsz (False) or frame-shaped (True)
    torch_arch: str | None = "yolov8n.yaml"  # Ultralytics model yaml for the torch backend
    model_file: str = MODEL_FILE
    conf_default: float = 0.25
    iou: float = 0.7
    max_det: int = 300

    @property
    def dynamic_hw(self) -> bool:
        return self.output_format == "raw-heads"

    def to_metadata(self) -> dict[str, Any]:
        return {
            "names": json.dumps(list(self.names), ensure_ascii=False),
            "num_classes": len(self.names),
            "imgsz": f"{self.imgsz[0]},{self.imgsz[1]}",
            "stride": self.stride,
            "strides": ",".join(map(str, self.strides)),
            "reg_max": self.reg_max,
            "output_format": self.output_format,
            "letterbox_pad": self.letterbox_pad,
            "normalize": self.normalize,
            "rect": self.rect,
            "torch_arch": self.torch_arch or "",
            "model_file": self.model_file,
            "conf_default": self.conf_default,
            "iou": self.iou,
            "max_det": self.max_det,
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> DetectorSpec:
        try:
            names = meta["names"]
            names = json.loads(names) if isinstance(names, str) else list(names)
            imgsz = _ints(meta.get("imgsz", "640,640"))
            return cls(
                names=tuple(str(n) for n in names),
                imgsz=(imgsz[0], imgsz[-1]),
                stride=int(meta.get("stride", 32)),
                strides=tuple(_ints(meta.get("strides", "8,16,32"))),
                reg_max=int(meta.get("reg_max", 16)),
                output_format=str(meta.get("output_format", "raw-heads")),
                letterbox_pad=int(meta.get("letterbox_pad", 114)),
                normalize=str(meta.get("normalize", "rgb/255")),
                rect=str(meta.get("rect", False)).lower() in ("true", "1", "yes"),
                torch_arch=str(meta.get("torch_arch") or "") or None,
                model_file=str(meta.get("model_file", MODEL_FILE)),
                conf_default=float(meta.get("conf_default", 0.25)),
                iou=float(meta.get("iou", 0.7)),
                max_det=int(meta.get("max_det", 300)),
            )
        except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"detector metadata is incomplete or malformed: {exc}") from exc

    def __post_init__(self) -> None:
        if self.torch_arch is not None and not _BUILTIN_ARCH.fullmatch(self.torch_arch):
            raise ModelLoadError(f"torch_arch {self.torch_arch[:60]!r} is not an Ultralytics built-in model name "
                                 "(e.g. yolov8n.yaml); artifacts cannot bring their own architecture file")
        if not _MODEL_FILE.fullmatch(self.model_file) or self.model_file.startswith(".."):
            raise ModelLoadError(f"model_file {self.model_file[:60]!r} must be a plain .onnx file name in the "
                                 "artifact folder")

    @classmethod
    def read(cls, artifact_dir: Path) -> DetectorSpec:
        path = Path(artifact_dir) / "hub.json"
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"cannot read {path}: {exc}") from exc
        if doc.get("capability") != CAPABILITY or doc.get("format") != ARTIFACT_FORMAT:
            raise ModelLoadError(
                f"{path} is for {doc.get('capability')!r}/{doc.get('format')!r}, not {CAPABILITY}/{ARTIFACT_FORMAT}"
            )
        spec = cls.from_metadata(doc.get("metadata", {}))
        root = Path(artifact_dir).resolve()
        if not (root / spec.model_file).resolve().is_relative_to(root):
            raise ModelLoadError(f"model_file {spec.model_file!r} lies outside {artifact_dir}")
        if not (Path(artifact_dir) / spec.model_file).is_file():
            raise ModelLoadError(f"{artifact_dir} has no {spec.model_file}")
        return spec


def _ints(text: Any) -> list[int]:
    if isinstance(text, (list, tuple)):
        return [int(v) for v in text]
    return [int(v) for v in str(text).replace("[", "").replace("]", "").split(",") if v.strip()]


def prepare_artifact(
    onnx_path: Path,
    out_dir: Path,
    *,
    torch_arch: str | None = None,
    sample_image: Path | None = None,
    source: str = "",
    rect: bool = False,
) -> dict[str, Any]:
    """Write a servable artifact for an Ultralytics YOLO detection ONNX export; returns its metadata."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # onnx raises DecodeError/OSError variants
        raise ModelLoadError(f"cannot read ONNX {onnx_path}: {exc}") from exc
    meta = yolo_metadata(model)
    if meta["task"] != "detect" or meta["end2end"]:
        raise ModelLoadError(f"{onnx_path} is a {meta['task']!r} export (end2end={meta['end2end']}); need detect")
    quantized = is_quantized(model)
    if quantized:
        model = dequantize_conv_integer(model)
    try:
        model, head = split_yolo_head(model)
        output_format = "raw-heads"
    except ModelLoadError:  # an unfamiliar head: keep the decoded output, free the batch axis only
        model, head = make_batch_dynamic(model), {"reg_max": 16, "nc": len(meta["names"]), "levels": 3}
        output_format = "decoded"
    onnx.checker.check_model(model)
    onnx.save(model, str(out_dir / MODEL_FILE))
    if sample_image is not None and Path(sample_image).is_file():
        _write_sample(Path(sample_image), out_dir / SAMPLE_FILE)
    stride = meta["stride"]
    spec = DetectorSpec(
        names=tuple(meta["names"]),
        imgsz=tuple(meta["imgsz"]),
        stride=stride,
        strides=tuple(stride // 2 ** (head["levels"] - 1 - i) for i in range(head["levels"])),
        reg_max=head["reg_max"],
        output_format=output_format,
        rect=rect,
        torch_arch=torch_arch,
    )
    metadata = spec.to_metadata() | {
        "source": source or str(onnx_path),
        "source_quantization": "int8-dynamic (ConvInteger), dequantised to fp32" if quantized else "fp32",
    }
    doc = {"capability": CAPABILITY, "format": ARTIFACT_FORMAT, "metadata": metadata}
    (out_dir / "hub.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    return metadata


def _write_sample(src: Path, dest: Path) -> None:
    """A small real photo in the artifact, so a freshly loaded version can be warmed up anywhere."""
    from PIL import Image

    with Image.open(src) as img:
        img = img.convert("RGB")
        img.thumbnail((320, 320))
        img.save(dest, format="JPEG", quality=85)


def prepare_default(shared_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Artifact of the default `see` model (yolov8n-coco) from ../shared."""
    src = Path(shared_dir) / DEFAULT_ONNX
    if not src.is_file():
        raise ModelLoadError(f"missing {src} (see ../shared/README.md)")
    return prepare_artifact(
        src,
        out_dir,
        torch_arch="yolov8n.yaml",
        sample_image=Path(shared_dir) / DEFAULT_SAMPLE,
        source="shared/models/detection/yolov8n-coco-int8.onnx (Ultralytics YOLOv8n COCO, AGPL-3.0)",
    )


def download_weights(dest: Path) -> Path:  # pragma: no cover - needs a network; never called by tests
    """For users with a network: fetch the official YOLOv8n weights and export them to ONNX
    (then `prepare_artifact(dest / "yolov8n.onnx", ...)`)."""
    import urllib.request

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    pt = dest / "yolov8n.pt"
    with urllib.request.urlopen(YOLOV8N_URL, timeout=60) as resp, pt.open("wb") as fh:  # noqa: S310
        shutil.copyfileobj(resp, fh)
    from gpu.compat import ensure_torchvision

    ensure_torchvision()
    from ultralytics import YOLO

    # Static, like `hub train see`: prepare_artifact cuts the head and frees batch, height and width
    # itself; a dynamic export cannot be cut and would be served as a fixed-square decoded model.
    return Path(YOLO(str(pt)).export(format="onnx", dynamic=False, simplify=True))
