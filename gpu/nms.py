"""Batched NMS on the device: one call for every frame of a batch, no per-frame Python loop.

Input is a YOLO-style prediction `[B, 4 + nc, N]` (xywh in model-input pixels, then per-class
scores). Semantics follow Ultralytics' `non_max_suppression` (best class per box, score strictly
above `conf_thres`, `classes` filtered after the best class is chosen, class-aware greedy NMS that
drops IoU > `iou_thres`, at most `max_det` per frame, best first), so results match its predictor.
Per-frame separation uses `torchvision.ops.batched_nms` with index `frame * nc + class`.

>>> kept = batched_nms(pred, conf_thres=0.25, iou_thres=0.7)   # kept.xyxy [K, 4], kept.batch_index [K]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gpu.compat import ensure_torchvision


@dataclass(frozen=True)
class NmsResult:
    """Kept boxes of a whole batch, grouped by frame (`batch_index` ascending), best first within a frame."""

    xyxy: torch.Tensor  # [K, 4] float32, model-input pixels
    scores: torch.Tensor  # [K] float32
    class_ids: torch.Tensor  # [K] int64
    batch_index: torch.Tensor  # [K] int64


def batched_nms(
    pred: torch.Tensor,
    conf_thres: float = 0.25,
    iou_thres: float = 0.7,
    classes: torch.Tensor | None = None,
    max_det: int = 300,
    agnostic: bool = False,
    max_nms: int = 30000,
) -> NmsResult:
    ensure_torchvision()
    import torchvision

    batch, channels, _ = pred.shape
    nc = channels - 4
    # Thresholding happens in the model's dtype; boxes and scores go to fp32 only for the few
    # candidates, so fp16 predictions never lose IoU precision.
    p = pred.transpose(1, 2)  # [B, N, 4 + nc]
    conf, cls = p[..., 4:].max(dim=-1)  # [B, N]
    mask = conf > conf_thres
    if classes is not None:
        mask &= torch.isin(cls, classes.to(cls.device))
    b_idx, a_idx = mask.nonzero(as_tuple=True)
    if b_idx.numel() > max_nms * batch:  # pathological frames: keep the best candidates only
        top = conf[b_idx, a_idx].float().topk(max_nms * batch).indices
        b_idx, a_idx = b_idx[top], a_idx[top]
    xywh = p[b_idx, a_idx, :4].float()
    scores = conf[b_idx, a_idx].float()
    class_ids = cls[b_idx, a_idx]
    xyxy = torch.cat((xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2), dim=1)

    groups = b_idx * (1 if agnostic else nc) + (0 if agnostic else class_ids)
    keep = torchvision.ops.batched_nms(xyxy, scores, groups, iou_thres)  # descending score
    # Group by frame without losing the score order inside a frame, then cap each frame at max_det.
    keep = keep[torch.sort(b_idx[keep], stable=True).indices]
    kb = b_idx[keep]
    if keep.numel():
        counts = torch.bincount(kb, minlength=batch)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(keep.numel(), device=keep.device) - starts[kb]
        keep, kb = keep[rank < max_det], kb[rank < max_det]
    return NmsResult(xyxy[keep], scores[keep], class_ids[keep], kb)
