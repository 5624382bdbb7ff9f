"""Parity: the batched `see` path gives the reference predictor's boxes on real images and video.

Reference = Ultralytics' own predictor (`YOLO(onnx, task="detect").predict`, one frame at a time)
on the served weights: the shared int8 YOLOv8n dequantised to fp32, in its exported form (full
head, batch 1). Ours = letterbox/normalise/NMS batched on the device, any batch size, mixed sizes.
A second check compares against the original int8 model on its confident boxes.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from gpu.compat import import_ultralytics
from hub.media import decode_image
from models.detection import Detector, prepare_default
from models.detection.backends import max_abs_difference
from models.detection.onnx_graph import dequantize_conv_integer
from tests.conftest import require_shared

INT8 = ("models", "detection", "yolov8n-coco-int8.onnx")


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


def _frames() -> list[np.ndarray]:
    import av

    frames = [decode_image(p.read_bytes()) for p in sorted(require_shared("data", "images").glob("*.jpg"))]
    for name in ("road-cars.mp4", "parking-lot-overhead.mp4"):
        with av.open(str(require_shared("data", "video", name))) as container:
            frames += [f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(video=0)) if i in (0, 90, 180, 260)]
    return frames


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return _frames()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, shared_dir) -> Path:
    out = tmp_path_factory.mktemp("see-parity")
    prepare_default(shared_dir, out)
    return out


@pytest.fixture(scope="module")
def detectors(artifact) -> dict[str, Detector]:
    out = {}
    for backend in ("onnxruntime", "torch"):
        det = Detector(backend=backend, warmup=False)
        det.load(artifact, "cpu")
        out[backend] = det
    return out


def _reference(onnx_path: Path, frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    import_ultralytics()
    from ultralytics import YOLO

    model = YOLO(str(onnx_path), task="detect")
    out = []
    for frame in frames:
        r = model.predict(np.ascontiguousarray(frame[..., ::-1]), verbose=False)[0]  # it expects BGR
        out.append((r.boxes.xyxy.numpy(), r.boxes.cls.numpy().astype(np.int64), r.boxes.conf.numpy()))
    return out


@pytest.fixture(scope="module")
def reference_fp32(tmp_path_factory, frames):
    path = tmp_path_factory.mktemp("ref") / "yolov8n-coco-fp32.onnx"
    onnx.save(dequantize_conv_integer(onnx.load(str(require_shared(*INT8)))), str(path))
    return _reference(path, frames)


@pytest.fixture(scope="module")
def reference_int8(frames):
    return _reference(require_shared(*INT8), frames)


def _run(det: Detector, frames: list[np.ndarray], batching: str):
    order = list(range(len(frames)))
    if batching == "one by one":
        return [det.detect_arrays([f])[0] for f in frames]
    if batching == "shuffled, all at once":
        random.Random(0).shuffle(order)
        shuffled = det.detect_arrays([frames[i] for i in order])
        out = [None] * len(frames)
        for pos, i in enumerate(order):
            out[i] = shuffled[pos]
        return out
    size = int(batching.split()[-1])
    return [d for s in range(0, len(frames), size) for d in det.detect_arrays(frames[s : s + size])]


@pytest.mark.parametrize("batching", ["one by one", "batch of 3", "batch of 5", "shuffled, all at once"])
@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_same_boxes_as_reference_predictor(detectors, frames, reference_fp32, backend, batching):
    ours = _run(detectors[backend], frames, batching)
    assert sum(len(d) for d in ours) > 60  # real scenes, many boxes
    for k, (d, (ref_xyxy, ref_cls, _)) in enumerate(zip(ours, reference_fp32, strict=True)):
        assert set(d.class_id.tolist()) == set(ref_cls.tolist()), f"frame {k}: class sets differ"
        assert len(d) == len(ref_xyxy), f"frame {k}: {len(d)} boxes vs reference {len(ref_xyxy)}"
        if len(d):
            iou = _iou(ref_xyxy, d.xyxy)
            iou[ref_cls[:, None] != d.class_id[None]] = 0
            assert iou.max(1).min() >= 0.95, f"frame {k}: a reference box has no match with IoU >= 0.95"


def test_confident_boxes_of_the_int8_original_are_kept(detectors, frames, reference_int8):
    """Dequantising removes int8 activation noise: borderline boxes (score near 0.25) may differ,
    confident ones must not."""
    ours = detectors["onnxruntime"].detect_arrays(frames)
    checked = 0
    for d, (ref_xyxy, ref_cls, ref_score) in zip(ours, reference_int8, strict=True):
        keep = ref_score >= 0.5
        if not keep.any():
            continue
        iou = _iou(ref_xyxy[keep], d.xyxy)
        iou[ref_cls[keep][:, None] != d.class_id[None]] = 0
        assert iou.max(1).min() >= 0.9
        checked += int(keep.sum())
    assert checked >= 20


@pytest.mark.parametrize("shape", [(2, 3, 640, 640), (3, 3, 384, 640)])
def test_torch_backend_matches_onnxruntime(detectors, shape):
    batch = torch.rand(shape, generator=torch.Generator().manual_seed(shape[0]))
    pred = detectors["onnxruntime"].backend(batch)
    assert pred.shape == (shape[0], 84, (shape[2] // 8) * (shape[3] // 8) * 21 // 16)
    # xywh in pixels (0..640) and scores (0..1): fp32 on both sides
    assert max_abs_difference(detectors["onnxruntime"].backend, detectors["torch"].backend, batch) < 1e-2
