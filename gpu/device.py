"""Device choice, fp16 and warm-up: the only place that asks torch what hardware is here.

>>> device = pick_device("auto")        # "cuda:0" on a GPU machine, "cpu" elsewhere
>>> dtype = compute_dtype(device)       # torch.float16 on CUDA, torch.float32 on CPU
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from hub.errors import InvalidInput


def pick_device(requested: str = "auto") -> str:
    """Normalise a device request: "auto" -> "cuda:0" when a GPU is usable, else "cpu"."""
    requested = (requested or "auto").strip().lower()
    if requested == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested in ("cuda", "gpu"):
        requested = "cuda:0"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidInput(f"device {requested!r} asked for, but torch sees no CUDA GPU here")
        index = torch.device(requested).index or 0
        if index >= torch.cuda.device_count():
            raise InvalidInput(f"device {requested!r} asked for, but only {torch.cuda.device_count()} GPU(s)")
        return f"cuda:{index}"
    raise InvalidInput(f"unknown device {requested!r}; use auto, cpu or cuda[:n]")


def is_cuda(device: str | torch.device) -> bool:
    return torch.device(device).type == "cuda"


def compute_dtype(device: str | torch.device, fp16: bool | None = None) -> torch.dtype:
    """fp16 on CUDA (tensor cores; every GPU the hub targets has them), fp32 on CPU."""
    if fp16 is None:
        fp16 = is_cuda(device)
    if fp16 and not is_cuda(device):
        raise InvalidInput("fp16 is only supported on CUDA devices here")
    return torch.float16 if fp16 else torch.float32


def configure_cuda() -> None:
    """Settings that pay off for a fixed set of shapes: cudnn autotuning, TF32 for fp32 leftovers."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def synchronize(device: str | torch.device) -> None:
    if is_cuda(device):
        torch.cuda.synchronize(torch.device(device))


def warm_up(fn: Callable[[], object], device: str | torch.device, repeat: int = 2) -> float:
    """Run `fn` a few times (cudnn autotune, lazy CUDA init, ORT arena growth); returns seconds spent."""
    start = time.perf_counter()
    for _ in range(max(repeat, 1)):
        fn()
    synchronize(device)
    return time.perf_counter() - start
