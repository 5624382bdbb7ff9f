"""Make `import torchvision` (and so ultralytics) work on a CPU-only torch.

The only torchvision 0.28.0 wheel on the registry is a CUDA build: with CPU torch its `_C.so`
cannot load and `import torchvision` raises `RuntimeError: operator torchvision::nms does not
exist`. `ensure_torchvision()` then defines the `torchvision::nms` / `torchvision::qnms` operator
schemas itself, registers a CPU kernel for nms, and imports torchvision again: `ops.nms` and
`ops.batched_nms` work; roi_align, deform_conv and `torchvision.io` stay unavailable (decode with
PIL/cv2/PyAV). Where a real torchvision loads (a CUDA install, or `torchvision==0.28.0+cpu`) it is a
no-op. Call it before the first import of torchvision or ultralytics, in every process (each Ray
worker too); it is idempotent and thread-safe.

>>> from gpu.compat import ensure_torchvision
>>> ensure_torchvision()          # "native" or "shim"
'shim'
>>> import ultralytics            # now safe
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import torch

_LOCK = threading.Lock()
_STATE: str | None = None  # "native" | "shim" once decided
_LIBRARY: torch.library.Library | None = None  # must stay referenced, or the schemas vanish


def ensure_torchvision() -> str:
    """Import torchvision, shimming its missing native ops on CPU torch. Returns "native" or "shim"."""
    global _STATE
    if _STATE is not None:
        return _STATE
    with _LOCK:
        if _STATE is not None:
            return _STATE
        if _has_native_nms():
            import torchvision  # noqa: F401  (a real build, or one imported after our shim)

            _STATE = "native"
            return _STATE
        _purge_partial_import()
        _define_ops()
        import torchvision  # noqa: F401
        import torchvision.extension

        # `ops.nms` asserts the C++ extension loaded; our schemas now stand in for it.
        torchvision.extension._has_ops = lambda: True
        _STATE = "shim"
        return _STATE


def _has_native_nms() -> bool:
    """True when torchvision's own C++ ops loaded (or a shim is already registered in-process)."""
    try:
        torch.ops.torchvision.nms  # noqa: B018  (attribute lookup resolves the registered schema)
        return True
    except (AttributeError, RuntimeError):
        pass
    try:
        import torchvision  # noqa: F401
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
        return False
    return True


def _purge_partial_import() -> None:
    # A failed `import torchvision` leaves half-initialised modules behind; drop them so that the
    # import after the shim runs the package's init from the start.
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def _define_ops() -> None:
    global _LIBRARY
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("nms", _nms_cpu, "CPU")
    lib.impl("qnms", _nms_cpu, "CPU")
    _LIBRARY = lib


def nms_numpy(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS with torchvision's semantics: drop a box whose IoU with a kept, higher-scoring box
    is > iou_threshold; return kept indices by decreasing score. One numpy pass per kept box."""
    boxes = boxes_xyxy.astype(np.float32, copy=False)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def _nms_cpu(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    if dets.numel() == 0:
        return torch.empty(0, dtype=torch.long)
    keep = nms_numpy(dets.detach().float().numpy(), scores.detach().float().numpy(), float(iou_threshold))
    return torch.from_numpy(keep)


def import_ultralytics():
    """`import ultralytics` safely: torchvision shim first, offline, and PIL left as it was.

    Importing ultralytics replaces `PIL.Image.open` with a wrapper that, on an unidentifiable
    image, tries to install and import `pi_heif` — so a corrupt upload would raise
    `ModuleNotFoundError` (a 500) instead of PIL's `UnidentifiedImageError` (a 400) anywhere in the
    process. The original opener is put back.
    """
    import os

    from PIL import Image

    ensure_torchvision()
    for key, value in (("YOLO_OFFLINE", "1"), ("YOLO_AUTOINSTALL", "0"), ("YOLO_VERBOSE", "False")):
        os.environ.setdefault(key, value)
    original_open = Image.open
    import ultralytics
    from ultralytics.utils import patches

    Image.open = getattr(patches, "_image_open", original_open)
    return ultralytics
