"""gpu.onnx.onnx_providers: the one provider choice of every ONNX model (detector backend, PP-OCR)."""

from __future__ import annotations

import logging

import onnxruntime as ort
import pytest

from gpu.onnx import CPU, onnx_providers

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.parametrize(
    ("device", "cuda_expected"),
    [("cpu", False), ("cuda", HAS_CUDA), ("cuda:0", HAS_CUDA), ("cuda:1", HAS_CUDA)],
)
def test_providers_follow_the_device_and_what_onnxruntime_has(device, cuda_expected, caplog):
    with caplog.at_level(logging.WARNING, logger="gpu.onnx"):
        providers = onnx_providers(device, "the test model")
    assert providers[-1] == CPU  # CPU stays as the fallback for ops CUDA lacks
    if cuda_expected:
        name, options = providers[0]
        assert name == "CUDAExecutionProvider"
        assert options["device_id"] == int(device.partition(":")[2] or 0)
    else:
        assert providers == [CPU]
        # asking for CUDA on a CPU-only onnxruntime is said, not silent
        assert ("the test model runs on CPU" in caplog.text) == device.startswith("cuda")
