"""A served detector artifact -> an Ultralytics checkpoint that `YOLO(path).train()` accepts.

The artifact holds conv+BN FUSED weights (that is what an ONNX export is). Fine-tuning wants the
BatchNorm layers back, or a trainer with batch statistics would normalise activations the fused
weights never saw. A fused conv computes `W'x + b'`; we rebuild each `Conv(conv, bn)` as

    conv.weight = W',  bn.running_mean = m,  bn.running_var = v,  bn.weight = sqrt(v + eps),  bn.bias = b' + m

where `m`, `v` are the per-channel mean and variance of `W'x` measured on a few calibration images.
In eval mode the block computes exactly `W'x + b'` (the artifact's answer), and in train mode the
batch statistics are close to the running ones, so the first steps start from the champion's
behaviour instead of from a re-normalised network.

>>> ckpt = write_checkpoint(artifact_dir, Path("/tmp/champion.pt"), calibration_frames)
>>> YOLO(str(ckpt)).train(data="data.yaml", epochs=1)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from gpu.collate import DeviceCollator, letterbox_params
from hub.errors import ModelLoadError
from models.detection.artifact import DetectorSpec
from models.detection.backends import build_torch_model

CALIBRATION_FRAMES_MIN = 1


def trainable_model(artifact_dir: Path, calibration_frames: Sequence[np.ndarray]) -> torch.nn.Module:
    """Unfused Ultralytics `DetectionModel` whose eval-mode output equals the artifact's (see module doc).

    `calibration_frames`: RGB uint8 frames (any size) from the data the model will be tuned on.
    """
    if len(calibration_frames) < CALIBRATION_FRAMES_MIN:
        raise ModelLoadError("calibrating BatchNorm statistics needs at least one image")
    artifact_dir = Path(artifact_dir)
    spec = DetectorSpec.read(artifact_dir)
    if not spec.torch_arch:
        raise ModelLoadError(f"{artifact_dir} names no torch_arch: its weights cannot be fine-tuned with Ultralytics")
    fused = build_torch_model(artifact_dir / spec.model_file, spec).state_dict()

    from ultralytics.nn.modules.conv import Conv
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(spec.torch_arch, nc=len(spec.names), verbose=False)
    blocks = {name: m for name, m in model.named_modules() if isinstance(m, Conv) and hasattr(m, "bn")}
    state = model.state_dict()
    with torch.no_grad():
        for key, tensor in state.items():  # plain tensors (head convs, DFL): same key, same shape
            if key in fused and fused[key].shape == tensor.shape:
                tensor.copy_(fused[key])
        for name, block in blocks.items():
            weight, bias = fused.get(f"{name}.conv.weight"), fused.get(f"{name}.conv.bias")
            if weight is None or bias is None or weight.shape != block.conv.weight.shape:
                raise ModelLoadError(f"fused weights of {name} do not fit {spec.torch_arch}")
            block.conv.weight.copy_(weight)
            _set_bn(block.bn, torch.zeros_like(bias), torch.ones_like(bias), bias)
    model.eval()
    stats = _conv_statistics(model, blocks, calibration_frames, spec)
    with torch.no_grad():
        for name, block in blocks.items():
            mean, var = stats[name]
            _set_bn(block.bn, mean, var, fused[f"{name}.conv.bias"])
    model.names = dict(enumerate(spec.names))
    return model


def _set_bn(bn: torch.nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor, fused_bias: torch.Tensor) -> None:
    """BN that maps z to z + fused_bias in eval mode, with running statistics (mean, var)."""
    bn.running_mean.copy_(mean)
    bn.running_var.copy_(var)
    bn.weight.copy_(torch.sqrt(var + bn.eps))
    bn.bias.copy_(fused_bias + mean)


def _conv_statistics(model: torch.nn.Module, blocks: dict, frames: Sequence[np.ndarray], spec: DetectorSpec) -> dict:
    """Per-channel mean and variance of every block's conv output (before BN) over the frames."""
    sums: dict[str, list[torch.Tensor]] = {}

    def hook(name: str):
        def record(_module, _inputs, output: torch.Tensor) -> None:
            x = output.detach().double()
            acc = sums.setdefault(name, [torch.zeros(x.shape[1], dtype=torch.float64)] * 2 + [0])
            acc[0] = acc[0] + x.sum(dim=(0, 2, 3))
            acc[1] = acc[1] + (x * x).sum(dim=(0, 2, 3))
            acc[2] += x.shape[0] * x.shape[2] * x.shape[3]
        return record

    handles = [block.conv.register_forward_hook(hook(name)) for name, block in blocks.items()]
    collate = DeviceCollator("cpu", torch.float32, spec.letterbox_pad)
    try:
        with torch.no_grad():
            for frame in frames:
                box = letterbox_params(frame.shape[:2], spec.imgsz, stride=spec.stride)
                model(collate([frame], [box]))
    finally:
        for h in handles:
            h.remove()
    out = {}
    for name, (total, squares, count) in sums.items():
        mean = total / count
        var = (squares / count - mean * mean).clamp_min(1e-6)
        out[name] = (mean.float(), var.float())
    return out


def write_checkpoint(artifact_dir: Path, out_path: Path, calibration_frames: Sequence[np.ndarray]) -> Path:
    """Save `trainable_model(...)` in the layout Ultralytics' `load_checkpoint` reads (a `.pt` file)."""
    model = trainable_model(artifact_dir, calibration_frames)
    spec = DetectorSpec.read(Path(artifact_dir))
    from ultralytics import __version__

    ckpt = {
        "date": datetime.now(UTC).isoformat(),
        "version": __version__,
        "license": "weights of the hub artifact they came from (see its hub.json source)",
        "epoch": -1,
        "best_fitness": None,
        "model": model,
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": {"imgsz": spec.imgsz[0], "task": "detect"},
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out_path)
    return out_path
