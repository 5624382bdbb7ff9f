"""Decode of raw YOLOv8/11 Detect-head maps on the device (what the exported graph did inside).

`decode_heads([box0, cls0, box1, cls1, ...], strides)` -> `[B, 4 + nc, N]`: xywh in model-input
pixels (anchor grid + distribution-focal-loss expectation), then sigmoid class scores — the same
tensor Ultralytics' exported `output0` holds, for any input H, W.

>>> pred = decode_heads(outputs, strides=(8, 16, 32))
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch


@lru_cache(maxsize=64)
def _anchors(shapes: tuple[tuple[int, int], ...], strides: tuple[int, ...], device: str, dtype: torch.dtype):
    points, stride_col = [], []
    for (h, w), stride in zip(shapes, strides, strict=True):
        sy = torch.arange(h, device=device, dtype=torch.float32) + 0.5
        sx = torch.arange(w, device=device, dtype=torch.float32) + 0.5
        yy, xx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((xx, yy), 0).reshape(2, -1))
        stride_col.append(torch.full((1, h * w), float(stride), device=device))
    return torch.cat(points, 1).to(dtype), torch.cat(stride_col, 1).to(dtype)


def decode_heads(maps: Sequence[torch.Tensor], strides: Sequence[int], reg_max: int = 16) -> torch.Tensor:
    """Raw maps (box_i [B, 4*reg_max, H_i, W_i], cls_i [B, nc, H_i, W_i], level by level) -> [B, 4+nc, N]."""
    box_maps, cls_maps = maps[0::2], maps[1::2]
    b = box_maps[0].shape[0]
    box = torch.cat([m.reshape(b, 4 * reg_max, -1) for m in box_maps], dim=2)  # [B, 64, N]
    cls = torch.cat([m.reshape(b, m.shape[1], -1) for m in cls_maps], dim=2)  # [B, nc, N]
    shapes = tuple((int(m.shape[2]), int(m.shape[3])) for m in box_maps)
    anchor, stride = _anchors(shapes, tuple(int(s) for s in strides), str(box.device), box.dtype)
    # DFL: expectation of a softmax over reg_max bins, per side (left, top, right, bottom).
    bins = torch.arange(reg_max, device=box.device, dtype=box.dtype)
    dist = (box.view(b, 4, reg_max, -1).softmax(dim=2) * bins.view(1, 1, reg_max, 1)).sum(dim=2)  # [B, 4, N]
    lt, rb = dist[:, :2], dist[:, 2:]
    xy = (anchor + (rb - lt) / 2) * stride
    wh = (lt + rb) * stride
    return torch.cat((xy, wh, cls.sigmoid()), dim=1)
