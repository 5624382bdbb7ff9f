"""onnxruntime's execution providers for a hub device string: the one choice for every ONNX model
(the detector's ONNX backend, the PP-OCR models). No torch import: `read` replicas stay light.

>>> onnx_providers("cuda:1")   # on a GPU build of onnxruntime
[('CUDAExecutionProvider', {'device_id': 1}), 'CPUExecutionProvider']
>>> onnx_providers("cpu")
['CPUExecutionProvider']
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"


def onnx_providers(device: str, what: str = "the model") -> list:
    """CUDA on the device's index first when asked for and onnxruntime has it, else CPU (with a warning
    when CUDA was asked for: the CPU wheel of onnxruntime has no CUDA provider)."""
    import onnxruntime as ort

    kind, _, index = str(device).partition(":")
    if kind == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), CPU]
        log.warning("device %s asked for, but onnxruntime has no CUDA provider here; %s runs on CPU", device, what)
    return [CPU]
