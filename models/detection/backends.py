"""Two ways to run one detector artifact; both map a device batch `[B, 3, H, W]` (0..1 RGB) to the
prediction `[B, 4 + nc, N]` (xywh in input pixels, class scores) on the same device.

- `OrtBackend`: ONNX Runtime on `model.onnx` (CPU default; the CUDA provider when installed).
- `TorchBackend`: the same weights loaded into Ultralytics' architecture (`torch_arch` in hub.json),
  fused conv+BN as exported, fp16 on GPU. Its answers are checked against ONNX Runtime
  (`max_abs_difference`) in the tests and on load when asked.

>>> backend = make_backend("auto", artifact_dir, spec, "cuda:0")     # torch, fp16
>>> pred = backend(batch)
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from gpu.cores import usable_cores
from gpu.device import compute_dtype, configure_cuda, is_cuda
from gpu.onnx import onnx_providers
from hub.errors import ModelLoadError
from models.detection.artifact import DetectorSpec
from models.detection.decode import decode_heads

log = logging.getLogger(__name__)


class Backend(Protocol):
    name: str
    device: str
    dtype: torch.dtype

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...


class OrtBackend:
    """ONNX Runtime session over the artifact's graph (see module doc).

    On CPU a batch is not one call: its frames are split into one chunk per core, and the chunks
    run at once, each on a single-threaded session (`session.run` is thread-safe and releases the
    GIL). Measured on the 2-core dev box (yolov8n, 640x384): one 2-thread call on a batch of 8 ran
    20 frames/s alone but 7.5 beside one busy core, while two single-threaded halves ran 21-22 and
    17: a multi-threaded call waits at every layer for its slowest thread, and beside camera
    decoders or a proxy some thread is always preempted. Batching gains nothing on a CPU by
    itself (a frame costs the same compute in a batch); working every core does. A lone frame still
    gets every core, through a second session with the default threads."""

    name = "onnxruntime"

    def __init__(self, artifact_dir: Path, spec: DetectorSpec, device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        self.spec = spec
        providers = onnx_providers(device, "the detector's ONNX backend (use backend='torch')")
        model_path = Path(artifact_dir) / spec.model_file
        self.session = self._session(ort, model_path, providers, threads)
        self.device = device
        self.dtype = torch.float32
        self._input = self.session.get_inputs()[0].name
        self._outputs = [o.name for o in self.session.get_outputs()]
        cores = usable_cores()
        self._split = cores if device == "cpu" and threads is None and cores > 1 else 1
        self._single = self._session(ort, model_path, providers, 1) if self._split > 1 else None
        self._pool = ThreadPoolExecutor(self._split, thread_name_prefix="see-ort") if self._split > 1 else None

    @staticmethod
    def _session(ort, model_path: Path, providers, threads: int | None):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # unused-initialiser warnings are noise
        if threads:
            options.intra_op_num_threads = threads
        # Idle ORT workers spin by default; beside camera decoders (and other services) on a few
        # cores, spinning steals the CPU the next batch needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(str(model_path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelLoadError(f"onnxruntime could not load the detector: {exc}") from exc

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        if self._pool is None or len(x) < 2:
            return self.session.run(self._outputs, {self._input: x})
        chunks = np.array_split(x, min(len(x), self._split))
        parts = list(self._pool.map(lambda c: self._single.run(self._outputs, {self._input: c}), chunks))
        return [np.concatenate(outs, 0) for outs in zip(*parts, strict=True)]

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(batch.detach().float().cpu().numpy())
        outs = [torch.from_numpy(o) for o in self._run(x)]
        if self.spec.output_format == "raw-heads":
            pred = decode_heads(outs, self.spec.strides, self.spec.reg_max)
        else:
            pred = outs[0]
        return pred.to(batch.device, non_blocking=True)


class TorchBackend:
    """The artifact's weights in Ultralytics' torch architecture (see module doc)."""

    name = "torch"

    def __init__(self, artifact_dir: Path, spec: DetectorSpec, device: str = "cpu", fp16: bool | None = None) -> None:
        if not spec.torch_arch:
            raise ModelLoadError("this detector artifact names no torch_arch; use the onnxruntime backend")
        self.spec = spec
        self.device = device
        self.dtype = compute_dtype(device, fp16)
        self.model = build_torch_model(Path(artifact_dir) / spec.model_file, spec).to(device=device, dtype=self.dtype)
        if is_cuda(device):
            configure_cuda()
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.dtype)
        if is_cuda(self.device):
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) else out


def build_torch_model(onnx_path: Path, spec: DetectorSpec) -> torch.nn.Module:
    """Ultralytics `DetectionModel(torch_arch)`, conv+BN fused, weights copied from the ONNX by name."""
    import onnx
    from onnx import numpy_helper

    from gpu.compat import import_ultralytics

    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(spec.torch_arch, nc=len(spec.names), verbose=False)
    model.fuse()
    state = model.state_dict()
    weights = {
        i.name.removesuffix("_dequantized"): numpy_helper.to_array(i) for i in onnx.load(str(onnx_path)).graph.initializer
    }
    loaded, missing = {}, []
    for key, tensor in state.items():
        if key.endswith("dfl.conv.weight") and key not in weights:
            continue  # the fixed 0..reg_max-1 DFL projection, not a learned weight
        array = weights.get(key)
        if array is None or tuple(array.shape) != tuple(tensor.shape):
            missing.append(key)
            continue
        loaded[key] = torch.from_numpy(array.astype(np.float32))
    if missing:
        raise ModelLoadError(
            f"the ONNX weights do not fit {spec.torch_arch}: {len(missing)} tensors missing or misshapen "
            f"(first: {missing[:3]}); use the onnxruntime backend"
        )
    model.load_state_dict(loaded, strict=False)
    model.names = dict(enumerate(spec.names))
    return model.eval()


def make_backend(kind: str, artifact_dir: Path, spec: DetectorSpec, device: str, fp16: bool | None = None) -> Backend:
    """`kind`: "onnxruntime" | "torch" | "auto" (torch on CUDA, onnxruntime on CPU)."""
    if kind == "auto":
        kind = "torch" if is_cuda(device) and spec.torch_arch else "onnxruntime"
    if kind in ("onnxruntime", "ort", "onnx"):
        return OrtBackend(artifact_dir, spec, device)
    if kind == "torch":
        return TorchBackend(artifact_dir, spec, device, fp16)
    raise ModelLoadError(f"unknown detector backend {kind!r}; use auto, onnxruntime or torch")


def max_abs_difference(a: Backend, b: Backend, batch: torch.Tensor) -> float:
    """Largest absolute difference of the two backends' predictions on one batch (parity check)."""
    pa, pb = a(batch).float().cpu(), b(batch).float().cpu()
    return float((pa - pb).abs().max())
