"""Device collation: frames decoded on the CPU become one letterboxed, normalised batch on the device.

All frames of a call go to the device in ONE host-to-device copy (through a pinned staging buffer
on CUDA, issued non-blocking); resizing, padding, scaling to 0..1 and the dtype cast (fp16 on GPU)
happen there, one resize per group of equal-sized frames (a fleet of cameras mostly shares one
resolution). On CPU the same code runs with plain memory. Boxes come back to each frame's own
pixels with `boxes_to_source`. The letterbox arithmetic is Ultralytics' (`LetterBox`,
`scale_boxes`), so boxes agree with its reference predictor.

>>> lb = [letterbox_params(f.shape[:2], (640, 640)) for f in frames]
>>> batch = DeviceCollator("cuda:0", torch.float16)(frames, lb)     # [B, 3, 640, 640] on the GPU
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from gpu.device import is_cuda
from hub.errors import InvalidInput


@dataclass(frozen=True)
class Letterbox:
    """Where a source frame sits inside the model input: resized to new_h x new_w at (top, left)."""

    src_h: int
    src_w: int
    new_h: int
    new_w: int
    top: int
    left: int
    out_h: int
    out_w: int

    @property
    def out_hw(self) -> tuple[int, int]:
        return self.out_h, self.out_w

    @property
    def gain_x(self) -> float:
        return self.new_w / self.src_w

    @property
    def gain_y(self) -> float:
        return self.new_h / self.src_h


def letterbox_params(
    src_hw: tuple[int, int], target_hw: tuple[int, int], *, stride: int = 32, rect: bool = False
) -> Letterbox:
    """Ultralytics' LetterBox geometry. `rect=True` pads only to a multiple of `stride` (a smaller,
    frame-shaped input: 640x384 for 16:9 video), `rect=False` pads to exactly `target_hw`."""
    h, w = int(src_hw[0]), int(src_hw[1])
    if h <= 0 or w <= 0:
        raise InvalidInput(f"frame has no pixels ({h}x{w})")
    th, tw = int(target_hw[0]), int(target_hw[1])
    r = min(th / h, tw / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = tw - new_w, th - new_h
    if rect:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    return Letterbox(h, w, new_h, new_w, top, left, new_h + top + bottom, new_w + left + right)


class DeviceCollator:
    """Letterbox + normalise + stack on `device` (see module doc).

    Example::

        collate = DeviceCollator("cuda:0", torch.float16)
        batch = collate(frames_rgb_uint8, [letterbox_params(f.shape[:2], (640, 640)) for f in frames])
    """

    def __init__(self, device: str | torch.device, dtype: torch.dtype = torch.float32, pad_value: int = 114) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.pad_value = pad_value
        self._pin = is_cuda(self.device)
        self._local = threading.local()  # one staging buffer per calling thread

    def __call__(self, frames: Sequence[np.ndarray | torch.Tensor], boxes: Sequence[Letterbox]) -> torch.Tensor:
        """Frames are HxWx3 uint8 RGB: numpy arrays (staged through one pinned buffer) or torch tensors
        (uploaded as they are: pass pinned CPU tensors, or tensors already on the device, to skip the
        staging copy)."""
        if len(frames) != len(boxes) or not frames:
            raise ValueError("need one Letterbox per frame and at least one frame")
        out_hw = boxes[0].out_hw
        if any(b.out_hw != out_hw for b in boxes):
            raise ValueError("all frames of one batch must share one input shape (bucket them first)")
        for i, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
            if frame.dtype not in (np.uint8, torch.uint8) or frame.ndim != 3 or frame.shape[2] != 3:
                raise InvalidInput(f"frame {i} must be HxWx3 uint8, got {frame.dtype} {tuple(frame.shape)}")
            if tuple(frame.shape[:2]) != (box.src_h, box.src_w):
                raise ValueError(f"frame {i} is {tuple(frame.shape[:2])}, its Letterbox says {(box.src_h, box.src_w)}")
        groups: dict[Letterbox, list[int]] = {}
        for i, box in enumerate(boxes):
            groups.setdefault(box, []).append(i)

        batch = torch.full((len(frames), 3, *out_hw), float(self.pad_value) / 255.0, dtype=self.dtype, device=self.device)
        for box, idx, x in self._upload(frames, groups):  # x: [G, H, W, 3] uint8 on the device
            if (box.new_h, box.new_w) != (box.src_h, box.src_w):
                x = resize_linear_u8(x, (box.new_h, box.new_w))
            x = x.permute(0, 3, 1, 2).to(self.dtype).div_(255.0)
            rows = slice(box.top, box.top + box.new_h)
            cols = slice(box.left, box.left + box.new_w)
            if len(idx) == 1:
                batch[idx[0], :, rows, cols] = x[0]
            else:
                batch[torch.as_tensor(idx, device=self.device), :, rows, cols] = x
        return batch

    def _upload(self, frames, groups: dict[Letterbox, list[int]]) -> list[tuple[Letterbox, list[int], torch.Tensor]]:
        """Per group of equal-sized frames: a uint8 [G, H, W, 3] tensor on the device."""
        out = []
        staged = {box: idx for box, idx in groups.items() if not isinstance(frames[idx[0]], torch.Tensor)}
        for box, idx in groups.items():
            if box not in staged:
                tensors = [frames[i] if isinstance(frames[i], torch.Tensor) else torch.from_numpy(frames[i]) for i in idx]
                out.append((box, idx, torch.stack([t.to(self.device, non_blocking=True) for t in tensors])))
        if staged:
            # numpy frames: one copy into (pinned) staging memory, ONE host-to-device transfer
            nbytes = sum(frames[i].nbytes for idx in staged.values() for i in idx)
            host = self._staging(nbytes)
            self._wait_previous_copy()
            host_np, offset, spans = host.numpy(), 0, []
            for box, idx in staged.items():
                start = offset
                for i in idx:
                    frame = np.asarray(frames[i])
                    host_np[offset : offset + frame.nbytes] = frame.reshape(-1)
                    offset += frame.nbytes
                spans.append((box, idx, start, offset))
            on_device = host[:offset].to(self.device, non_blocking=True)
            self._record_copy()
            for box, idx, start, end in spans:
                out.append((box, idx, on_device[start:end].view(len(idx), box.src_h, box.src_w, 3)))
        return out

    # Pinned staging memory is reused across calls; the previous async copy must finish before
    # its buffer is overwritten.
    def _staging(self, nbytes: int) -> torch.Tensor:
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.numel() < nbytes:
            size = max(nbytes, int(getattr(buf, "numel", lambda: 0)() * 1.5))
            buf = torch.empty(size, dtype=torch.uint8, pin_memory=self._pin)
            self._local.buf = buf
        return buf

    def _wait_previous_copy(self) -> None:
        event = getattr(self._local, "event", None)
        if event is not None:
            event.synchronize()

    def _record_copy(self) -> None:
        if self._pin:
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(self.device))
            self._local.event = event


@lru_cache(maxsize=256)
def _taps(src: int, dst: int, device: str) -> tuple[torch.Tensor, ...]:
    """OpenCV's INTER_LINEAR source indices and 11-bit fixed-point weights along one axis."""
    d = torch.arange(dst, dtype=torch.float64, device=device)
    f = ((d + 0.5) * (src / dst) - 0.5).float()  # OpenCV computes the position in float
    s = torch.floor(f)
    f, s = f - s, s.long()
    clamp = (s < 0) | (s >= src - 1)  # edges: one tap, weight 1
    s = s.clamp(0, src - 1)
    f = torch.where(clamp, torch.zeros_like(f), f)
    w1 = torch.round(f * 2048).int()
    w0 = torch.round((1 - f) * 2048).int()
    return s, (s + 1).clamp(max=src - 1), w0, w1


def resize_linear_u8(x: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of uint8 frames [G, H, W, C] (channels last, as decoded) that reproduces
    `cv2.resize(..., INTER_LINEAR)` bit for bit (its 11-bit fixed-point weights and SIMD rounding),
    on any device. Returns [G, h, w, C] uint8.

    Why not `F.interpolate`: float bilinear is off by one grey level on ~8% of pixels, which is
    enough to move a borderline box of the reference predictor by several pixels. On the host the
    work goes to OpenCV (same bytes, ~50x faster than torch integer ops on a CPU); on a GPU the
    integer emulation below runs.
    """
    if x.device.type == "cpu":  # on the host, OpenCV itself is the fastest way to the same bytes
        return _resize_cv2(x, size_hw)
    return resize_fixed_point(x, size_hw)


def resize_fixed_point(x: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """The device kernel of `resize_linear_u8`: OpenCV's INTER_LINEAR in torch integer ops."""
    h, w = size_hw
    dev = str(x.device)
    xs0, xs1, a0, a1 = _taps(x.shape[2], w, dev)
    ys0, ys1, b0, b1 = _taps(x.shape[1], h, dev)

    def horizontal(rows: torch.Tensor) -> torch.Tensor:  # whole pixels gathered, widened late: x2048
        return rows.index_select(2, xs0).int() * a0[:, None] + rows.index_select(2, xs1).int() * a1[:, None]

    # only the source rows the output needs; the horizontal pass is per row, so this is exact
    top = horizontal(x.index_select(1, ys0)) >> 4
    bottom = horizontal(x.index_select(1, ys1)) >> 4
    # OpenCV's vector path: 16-bit high multiplies, then a rounding shift by 2.
    out = ((top * b0[:, None, None]) >> 16) + ((bottom * b1[:, None, None]) >> 16)
    return ((out + 2) >> 2).clamp_(0, 255).to(torch.uint8)


def _resize_cv2(x: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    import cv2

    out = torch.empty((x.shape[0], *size_hw, x.shape[3]), dtype=torch.uint8)
    for i in range(x.shape[0]):
        cv2.resize(x[i].numpy(), (size_hw[1], size_hw[0]), dst=out[i].numpy(), interpolation=cv2.INTER_LINEAR)
    return out


def boxes_to_source(xyxy: torch.Tensor, batch_index: torch.Tensor, boxes: Sequence[Letterbox]) -> torch.Tensor:
    """Map model-input xyxy boxes of frame `batch_index[k]` back to that frame's pixels, clipped."""
    if xyxy.numel() == 0:
        return xyxy.float()
    params = torch.tensor(
        [[b.left, b.top, b.gain_x, b.gain_y, b.src_w, b.src_h] for b in boxes], dtype=torch.float32, device=xyxy.device
    )[batch_index]
    out = xyxy.float().clone()
    out[:, 0::2] = ((out[:, 0::2] - params[:, 0:1]) / params[:, 2:3]).clamp_(min=0).minimum(params[:, 4:5])
    out[:, 1::2] = ((out[:, 1::2] - params[:, 1:2]) / params[:, 3:4]).clamp_(min=0).minimum(params[:, 5:6])
    return out
