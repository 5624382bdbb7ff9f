"""Score a registered detector artifact on a dataset split: mAP50, mAP50-95, precision, recall.

The artifact is loaded the way serving loads it (`models.detection.Detector`, onnxruntime on CPU),
so the number the gate compares is the number of what cameras would run. The model's classes are
matched to the dataset's BY NAME: the COCO champion is scored on `car` of an overhead-cars set;
a dataset class the model does not know gets AP 0. Matching and AP follow Ultralytics' validator
(greedy one-to-one IoU matching at 0.50:0.95, `ap_per_class`), at its validation settings
(confidence 0.001, NMS IoU 0.7, 300 boxes).

>>> score = evaluate_artifact(artifact_dir, DetectionData.read(yaml_path))
>>> score.map50, score.map50_95
(0.93, 0.61)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.see.data import DetectionData

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
VAL_CONF = 0.001
BATCH = 8


@dataclass(frozen=True)
class ImageResult:
    image: Path
    true_cls: np.ndarray
    true_xyxy: np.ndarray
    pred_cls: np.ndarray  # dataset class ids
    pred_xyxy: np.ndarray
    pred_score: np.ndarray


@dataclass(frozen=True)
class DetScore:
    map50: float
    map50_95: float
    precision: float
    recall: float
    per_class: dict[str, dict[str, float]]
    n: int  # images
    boxes: int  # ground-truth boxes
    results: tuple[ImageResult, ...] = field(default=(), repr=False, compare=False)

    def get(self, metric: str) -> float:
        return float(getattr(self, metric))

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        out = {f"{prefix}{k}": self.get(k) for k in ("map50", "map50_95", "precision", "recall")}
        for name, values in self.per_class.items():
            out |= {f"{prefix}{k}_{name}": v for k, v in values.items()}
        return out

    def line(self) -> str:
        return (f"mAP50 {self.map50:.4f}  mAP50-95 {self.map50_95:.4f}  precision {self.precision:.4f}  "
                f"recall {self.recall:.4f}  ({self.n} images, {self.boxes} boxes)")


def predict_split(artifact_dir: Path, data: DetectionData, split: str = "val", *,
                  progress: bool = False) -> list[ImageResult]:
    from PIL import Image

    from models.detection import Detector

    images = data.val if split == "val" else data.train
    detector = Detector(backend="onnxruntime", warmup=False)
    detector.load(Path(artifact_dir), "cpu")
    known = [n for n in data.names if n in detector.spec.names]
    to_data = {detector.spec.names.index(n): data.names.index(n) for n in known}
    steps = range(0, len(images), BATCH)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="evaluating", unit="batch")
    out: list[ImageResult] = []
    try:
        for start in steps:
            chunk = images[start : start + BATCH]
            frames = [np.asarray(Image.open(p).convert("RGB")) for p in chunk]
            dets = detector.detect_arrays(frames, classes=known or None, min_score=VAL_CONF) if known else [None] * len(frames)
            for path, frame, det in zip(chunk, frames, dets, strict=True):
                true_cls, true_xyxy = data.labels(path, frame.shape[1], frame.shape[0])
                if det is None:
                    pred_cls, pred_xyxy, pred_score = np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
                else:
                    pred_cls = np.array([to_data[int(c)] for c in det.class_id], np.int64)
                    pred_xyxy, pred_score = np.asarray(det.xyxy), np.asarray(det.score)
                out.append(ImageResult(path, true_cls, true_xyxy, pred_cls, pred_xyxy, pred_score))
    finally:
        detector.close()
    return out


def match_predictions(result: ImageResult) -> np.ndarray:
    """bool [N_pred, 10]: prediction i is a true positive at IoU threshold j (Ultralytics' rule)."""
    correct = np.zeros((len(result.pred_cls), len(IOU_THRESHOLDS)), bool)
    if not len(result.pred_cls) or not len(result.true_cls):
        return correct
    iou = box_iou(result.true_xyxy, result.pred_xyxy) * (result.true_cls[:, None] == result.pred_cls[None, :])
    for j, threshold in enumerate(IOU_THRESHOLDS):
        matches = np.argwhere(iou >= threshold)  # (true, pred) pairs
        if not len(matches):
            continue
        matches = matches[iou[matches[:, 0], matches[:, 1]].argsort()[::-1]]
        matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
        matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
        correct[matches[:, 1], j] = True
    return correct


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).prod(1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def score_results(results: list[ImageResult], names: tuple[str, ...], *, plot_dir: Path | None = None) -> DetScore:
    """mAP and friends over per-image results; `plot_dir` also gets Ultralytics' PR/F1/P/R curves."""
    from gpu.compat import import_ultralytics

    import_ultralytics()
    from ultralytics.utils.metrics import ap_per_class

    tp = np.concatenate([match_predictions(r) for r in results] or [np.zeros((0, 10), bool)])
    conf = np.concatenate([r.pred_score for r in results] or [np.zeros(0)])
    pred_cls = np.concatenate([r.pred_cls for r in results] or [np.zeros(0)])
    target_cls = np.concatenate([r.true_cls for r in results] or [np.zeros(0)])
    boxes = int(len(target_cls))
    if not boxes:
        return DetScore(0.0, 0.0, 0.0, 0.0, {}, len(results), 0, tuple(results))
    if plot_dir is not None:
        Path(plot_dir).mkdir(parents=True, exist_ok=True)
    _, _, p, r, _, ap, classes, *_ = ap_per_class(
        tp, conf, pred_cls, target_cls, plot=plot_dir is not None, save_dir=Path(plot_dir or "."),
        names=dict(enumerate(names)))
    per_class = {
        names[int(c)]: {"map50": float(ap[i, 0]), "map50_95": float(ap[i].mean()), "precision": float(p[i]),
                        "recall": float(r[i])}
        for i, c in enumerate(classes)
    }
    # a dataset class with boxes but never predicted still counts (ap_per_class already lists it)
    return DetScore(float(ap[:, 0].mean()), float(ap.mean()), float(p.mean()), float(r.mean()), per_class,
                    len(results), boxes, tuple(results))


def evaluate_artifact(artifact_dir: Path, data: DetectionData, *, plot_dir: Path | None = None,
                      progress: bool = False) -> DetScore:
    return score_results(predict_split(artifact_dir, data, "val", progress=progress), data.names, plot_dir=plot_dir)
