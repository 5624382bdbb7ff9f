"""Device collation against Ultralytics/OpenCV: geometry, pixels, and the way back to source pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from gpu.collate import (
    DeviceCollator,
    boxes_to_source,
    letterbox_params,
    resize_fixed_point,
    resize_linear_u8,
)
from gpu.compat import import_ultralytics

SIZES = [(1080, 810), (720, 1280), (432, 768), (333, 500), (240, 320), (641, 639), (77, 1000), (640, 640)]


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    # Smooth gradients + noise: resizing errors show up, unlike on flat colour.
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack(((xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) % 256)), -1)
    return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("rect", [False, True])
@pytest.mark.parametrize("hw", SIZES)
def test_letterbox_matches_ultralytics(hw, rect):
    import_ultralytics()
    from ultralytics.data.augment import LetterBox

    frame = _frame(*hw)
    reference = LetterBox((640, 640), auto=rect, stride=32)(image=frame)
    box = letterbox_params(hw, (640, 640), stride=32, rect=rect)
    ours = DeviceCollator("cpu")([frame], [box])[0]
    assert ours.shape[1:] == reference.shape[:2]
    ours_u8 = (ours.permute(1, 2, 0).numpy() * 255).round().astype(int)
    diff = np.abs(ours_u8 - reference)
    # same geometry and padding exactly; pixels bit-exact but for OpenCV's scalar row tail (+-1)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.002


@pytest.mark.parametrize("kernel", [resize_fixed_point, resize_linear_u8])  # the GPU kernel, run on CPU; the host path
@pytest.mark.parametrize("hw", SIZES)
def test_resize_reproduces_opencv_inter_linear(hw, kernel):
    frame = _frame(*hw, seed=1)
    box = letterbox_params(hw, (640, 640))
    reference = cv2.resize(frame, (box.new_w, box.new_h), interpolation=cv2.INTER_LINEAR)
    ours = kernel(torch.from_numpy(frame)[None], (box.new_h, box.new_w))[0]
    diff = np.abs(ours.numpy().astype(int) - reference)
    # bit-exact but for OpenCV's scalar tail of a row (a few pixels at the right edge, +-1)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.002


def test_mixed_sizes_in_one_batch_equal_one_by_one():
    frames = [_frame(*hw, seed=i) for i, hw in enumerate(SIZES)]
    boxes = [letterbox_params(f.shape[:2], (640, 640)) for f in frames]
    collate = DeviceCollator("cpu")
    batch = collate(frames, boxes)
    assert batch.shape == (len(frames), 3, 640, 640) and batch.dtype == torch.float32
    for i, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
        torch.testing.assert_close(batch[i], collate([frame], [box])[0], rtol=0, atol=0)


def test_batch_of_different_shapes_is_refused():
    frames = [_frame(432, 768), _frame(640, 480)]
    boxes = [letterbox_params(f.shape[:2], (640, 640), rect=True) for f in frames]
    with pytest.raises(ValueError, match="bucket"):
        DeviceCollator("cpu")(frames, boxes)


@pytest.mark.parametrize("hw", SIZES)
def test_boxes_round_trip_to_source_pixels(hw):
    box = letterbox_params(hw, (640, 640))
    h, w = hw
    source = torch.tensor([[0.1 * w, 0.2 * h, 0.6 * w, 0.9 * h], [0, 0, w, h]], dtype=torch.float32)
    model_space = source.clone()
    model_space[:, 0::2] = source[:, 0::2] * box.gain_x + box.left
    model_space[:, 1::2] = source[:, 1::2] * box.gain_y + box.top
    back = boxes_to_source(model_space, torch.zeros(2, dtype=torch.long), [box])
    torch.testing.assert_close(back, source, atol=1e-3, rtol=1e-4)
    # outside the frame (in the padding) clips to the frame
    outside = torch.tensor([[-50.0, -50.0, 700.0, 700.0]])
    clipped = boxes_to_source(outside, torch.zeros(1, dtype=torch.long), [box])[0].tolist()
    assert clipped == [0.0, 0.0, float(w), float(h)]


def test_tensor_frames_equal_numpy_frames():
    frames = [_frame(*hw, seed=i) for i, hw in enumerate(SIZES[:4])]
    boxes = [letterbox_params(f.shape[:2], (640, 640)) for f in frames]
    collate = DeviceCollator("cpu")
    from_numpy = collate(frames, boxes)
    from_tensors = collate([torch.from_numpy(f) for f in frames], boxes)
    torch.testing.assert_close(from_tensors, from_numpy, rtol=0, atol=0)
