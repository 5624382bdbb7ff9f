"""Batched NMS against Ultralytics' per-image `non_max_suppression`, and the torchvision shim."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpu.compat import ensure_torchvision, import_ultralytics, nms_numpy
from gpu.nms import batched_nms


def _predictions(batch: int, anchors: int, nc: int, seed: int) -> torch.Tensor:
    """Clustered boxes with overlapping duplicates, like a detector's raw output."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(batch, 2, 12, generator=g) * 600 + 20
    pick = torch.randint(0, 12, (batch, anchors), generator=g)
    xy = torch.gather(centres, 2, pick[:, None].expand(-1, 2, -1)) + torch.randn(batch, 2, anchors, generator=g) * 6
    wh = torch.rand(batch, 2, anchors, generator=g) * 80 + 20
    scores = torch.rand(batch, nc, anchors, generator=g) ** 6  # mostly low, a few confident
    return torch.cat((xy, wh, scores), 1)


CASES = [
    # (batch, anchors, nc, conf, iou, classes, max_det)
    (1, 500, 3, 0.25, 0.7, None, 300),
    (4, 2000, 80, 0.25, 0.7, None, 300),
    (3, 2000, 5, 0.10, 0.45, [1, 3], 300),
    (2, 3000, 2, 0.05, 0.5, None, 7),  # max_det bites per frame
    (5, 100, 4, 0.99, 0.7, None, 300),  # almost nothing survives; some frames empty
]


@pytest.mark.parametrize(("batch", "anchors", "nc", "conf", "iou", "classes", "max_det"), CASES)
def test_batched_nms_equals_ultralytics_per_frame(batch, anchors, nc, conf, iou, classes, max_det):
    import_ultralytics()
    from ultralytics.utils.nms import non_max_suppression

    pred = _predictions(batch, anchors, nc, seed=batch * 1000 + anchors)
    reference = non_max_suppression(pred.clone(), conf, iou, classes=classes, max_det=max_det)
    cls_tensor = torch.tensor(classes) if classes is not None else None
    kept = batched_nms(pred, conf, iou, cls_tensor, max_det=max_det)
    assert torch.all(kept.batch_index[1:] >= kept.batch_index[:-1])  # grouped by frame
    for b in range(batch):
        mine = kept.batch_index == b
        ref = reference[b]
        assert int(mine.sum()) == len(ref)
        torch.testing.assert_close(kept.xyxy[mine], ref[:, :4], rtol=1e-5, atol=1e-3)
        torch.testing.assert_close(kept.scores[mine], ref[:, 4])
        assert kept.class_ids[mine].tolist() == ref[:, 5].long().tolist()


def test_frames_never_suppress_each_other():
    pred = _predictions(1, 400, 3, seed=7)
    twice = torch.cat((pred, pred), 0)
    kept = batched_nms(twice, 0.2, 0.5)
    a, b = kept.batch_index == 0, kept.batch_index == 1
    assert int(a.sum()) == int(b.sum()) > 0
    torch.testing.assert_close(kept.xyxy[a], kept.xyxy[b])


@pytest.mark.parametrize("n", [0, 1, 50, 800])
def test_shim_nms_matches_torchvision_semantics(n):
    assert ensure_torchvision() in ("native", "shim")
    import torchvision

    rng = np.random.default_rng(n)
    xy = rng.random((n, 2)) * 300
    boxes = np.concatenate((xy, xy + rng.random((n, 2)) * 60 + 1), 1).astype(np.float32)
    scores = rng.random(n).astype(np.float32)
    keep_tv = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5).numpy()
    keep_np = nms_numpy(boxes, scores, 0.5)
    np.testing.assert_array_equal(keep_tv, keep_np)
    # no two kept boxes overlap more than the threshold
    if len(keep_np) > 1:
        from ultralytics.utils.metrics import box_iou

        ious = box_iou(torch.from_numpy(boxes[keep_np]), torch.from_numpy(boxes[keep_np])).fill_diagonal_(0)
        assert float(ious.max()) <= 0.5
