"""The same paths on a CUDA GPU (collected only with `-m gpu`; needs a GPU): device collation equals
the CPU's, and the fp16 torch backend finds the CPU reference's confident boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gpu.collate import DeviceCollator, letterbox_params
from gpu.nms import batched_nms
from hub.media import decode_image
from models.detection import Detector, prepare_default
from tests.conftest import require_shared

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _images() -> list[np.ndarray]:
    return [decode_image(p.read_bytes()) for p in sorted(require_shared("data", "images").glob("*.jpg"))]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, shared_dir) -> Path:
    out = tmp_path_factory.mktemp("see-gpu")
    prepare_default(shared_dir, out)
    return out


@pytest.mark.parametrize("as_tensor", [False, True])
def test_cuda_collation_equals_cpu(as_tensor):
    frames = _images()
    boxes = [letterbox_params(f.shape[:2], (640, 640)) for f in frames]
    cpu = DeviceCollator("cpu")(frames, boxes)
    inputs = [torch.from_numpy(f.copy()).pin_memory() for f in frames] if as_tensor else frames
    gpu32 = DeviceCollator("cuda:0", torch.float32)(inputs, boxes)
    # the integer resize is bit-exact on any device: same grey levels (the /255 may differ by an ulp)
    torch.testing.assert_close((gpu32.cpu() * 255).round(), (cpu * 255).round(), rtol=0, atol=0)
    gpu16 = DeviceCollator("cuda:0", torch.float16)(inputs, boxes)
    torch.testing.assert_close(gpu16.float().cpu(), cpu, rtol=0, atol=1e-3)


def test_cuda_nms_equals_cpu():
    g = torch.Generator().manual_seed(3)
    pred = torch.cat((torch.rand(4, 2, 3000, generator=g) * 600, torch.rand(4, 2, 3000, generator=g) * 80 + 10,
                      torch.rand(4, 80, 3000, generator=g) ** 8), 1)
    a = batched_nms(pred, 0.25, 0.7)
    b = batched_nms(pred.cuda(), 0.25, 0.7)
    # torchvision's CUDA batched NMS offsets boxes per group (frame x class) into one big plane, so
    # float32 rounding can flip an IoU that sits exactly at the threshold: allow a rare flip.
    ka, kb = _kept_set(a), _kept_set(b)
    assert len(ka) > 200 and len(ka ^ kb) <= 0.01 * len(ka)


def _kept_set(r) -> set[tuple]:
    rows = zip(r.batch_index.tolist(), r.class_ids.tolist(), r.xyxy.cpu().numpy().round(2).tolist(), strict=True)
    return {(b, c, *xyxy) for b, c, xyxy in rows}


@pytest.mark.parametrize("rect", [False, True])
def test_fp16_torch_backend_finds_the_cpu_boxes(artifact, rect):
    frames = _images()
    cpu = Detector(backend="onnxruntime", rect=rect, warmup=False)
    cpu.load(artifact, "cpu")
    gpu = Detector(rect=rect)  # auto: torch, fp16, batch buckets, warm-up
    gpu.load(artifact, "cuda:0")
    assert gpu.backend.name == "torch" and gpu.backend.dtype == torch.float16
    for ref, ours in zip(cpu.detect_arrays(frames), gpu.detect_arrays(frames), strict=True):
        confident = ref.score >= 0.5
        assert set(ref.class_id[confident].tolist()) <= set(ours.class_id.tolist())
        for box, cls in zip(ref.xyxy[confident], ref.class_id[confident], strict=True):
            same = ours.xyxy[ours.class_id == cls]
            lt = np.maximum(box[:2], same[:, :2])
            rb = np.minimum(box[2:], same[:, 2:])
            inter = np.clip(rb - lt, 0, None).prod(-1)
            iou = inter / ((box[2:] - box[:2]).prod() + (same[:, 2:] - same[:, :2]).prod(-1) - inter)
            assert iou.max() >= 0.9
