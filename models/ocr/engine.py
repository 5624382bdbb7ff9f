"""PP-OCR (DB detection + direction classifier + CTC recognition) on ONNX Runtime, with the hub's
own batching: detection per image, then direction classification and recognition of all lines
of all images of a batch together, recognition padded to a few width buckets. On a CPU with more
than one core, a batch of several images is cut into one part per core, each read at once on
single-threaded sessions: with ONNX Runtime's own threads a batch took what its images took one
by one (2 cores: 1.76 images/s one by one, 1.70 batched, 2.2-2.4 in parts; issue 11).

>>> engine = PpOcrEngine(EngineConfig.from_artifact(artifact_dir), device="cpu")
>>> pages = engine.read([rgb1, rgb2])          # list (per image) of list of OcrLine
>>> pages[0][0].text, pages[0][0].score, pages[0][0].box
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from gpu.cores import usable_cores
from gpu.onnx import CPU, onnx_providers
from hub.errors import ModelLoadError
from models.ocr.geometry import DbParams, crop_line, db_boxes, drop_tiny, reading_order

log = logging.getLogger(__name__)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in str(text).split(","))


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in str(text).split(","))


@dataclass(frozen=True)
class EngineConfig:
    """Everything `load()` needs, read from `hub.json` metadata (flat strings, see `prepare_default`)."""

    det_model: Path
    cls_model: Path | None
    rec_model: Path
    dictionary: Path
    color_order: str = "BGR"  # PaddleOCR models were trained on cv2.imread (BGR) images
    det_limit_side_len: int = 736  # the short side is brought up to at least this
    det_max_side_len: int = 2000  # ... and the long side down to at most this first
    det_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    det_std: tuple[float, ...] = (0.5, 0.5, 0.5)
    db: DbParams = field(default_factory=DbParams)
    cls_shape: tuple[int, ...] = (3, 48, 192)
    cls_labels: tuple[str, ...] = ("0", "180")
    cls_thresh: float = 0.9
    rec_height: int = 48
    rec_min_width: int = 320
    # Narrow steps where most lines fall: padding is wasted compute (and changes CTC output a little).
    rec_width_buckets: tuple[int, ...] = (*range(320, 1280, 32), 1280, 1600, 1920, 2560)
    # Most lines x width per recognition call (a GPU wants as many as fit; see __init__ for CPU).
    rec_batch_px_cpu: int = 16 * 640
    rec_batch_px_cuda: int = 128 * 640
    text_score: float = 0.5  # lines below this recognition score are dropped (PaddleOCR's drop_score)

    @classmethod
    def from_artifact(cls, artifact_dir: Path) -> EngineConfig:
        artifact_dir = Path(artifact_dir)
        try:
            meta = json.loads((artifact_dir / "hub.json").read_text(encoding="utf-8"))["metadata"]
        except (OSError, KeyError, ValueError) as exc:
            raise ModelLoadError(f"{artifact_dir} has no readable hub.json with metadata: {exc}") from exc
        try:
            d = cls.__dataclass_fields__
            db = DbParams(
                thresh=float(meta.get("det_db_thresh", DbParams.thresh)),
                box_thresh=float(meta.get("det_db_box_thresh", DbParams.box_thresh)),
                unclip_ratio=float(meta.get("det_db_unclip_ratio", DbParams.unclip_ratio)),
            )
            cls_file = meta.get("cls_model")
            return cls(
                det_model=artifact_dir / meta["det_model"],
                cls_model=artifact_dir / cls_file if cls_file else None,
                rec_model=artifact_dir / meta["rec_model"],
                dictionary=artifact_dir / meta["dictionary"],
                color_order=meta.get("color_order", d["color_order"].default),
                det_limit_side_len=int(meta.get("det_limit_side_len", d["det_limit_side_len"].default)),
                det_max_side_len=int(meta.get("det_max_side_len", d["det_max_side_len"].default)),
                det_mean=_floats(meta.get("det_mean", "0.5,0.5,0.5")),
                det_std=_floats(meta.get("det_std", "0.5,0.5,0.5")),
                db=db,
                cls_shape=_ints(meta.get("cls_input_shape", "3,48,192")),
                cls_labels=tuple(str(meta.get("cls_labels", "0,180")).split(",")),
                cls_thresh=float(meta.get("cls_thresh", d["cls_thresh"].default)),
                rec_height=int(meta.get("rec_image_height", d["rec_height"].default)),
                rec_min_width=int(meta.get("rec_min_width", d["rec_min_width"].default)),
                rec_width_buckets=_ints(meta["rec_width_buckets"]) if "rec_width_buckets" in meta
                else d["rec_width_buckets"].default,
                rec_batch_px_cpu=int(meta.get("rec_batch_px_cpu", d["rec_batch_px_cpu"].default)),
                rec_batch_px_cuda=int(meta.get("rec_batch_px_cuda", d["rec_batch_px_cuda"].default)),
                text_score=float(meta.get("text_score", d["text_score"].default)),
            )
        except (KeyError, ValueError) as exc:
            raise ModelLoadError(f"hub.json of {artifact_dir} lacks or mangles {exc}") from exc


@dataclass(frozen=True)
class OcrLine:
    """One recognised text line; `box` is (4, 2) float, clockwise from top-left, image pixels;
    `char_scores[i]` is the recogniser's confidence in `text[i]`, `score` their mean."""

    text: str
    score: float
    box: np.ndarray
    char_scores: tuple[float, ...] = ()


@dataclass(frozen=True)
class Recognized:
    text: str
    score: float
    char_scores: tuple[float, ...]


class PpOcrEngine:
    """The three PP-OCR ONNX models with batched recognition (see module docstring)."""

    def __init__(self, config: EngineConfig, device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        self.config = config
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = onnx_providers(device, "OCR")
        on_gpu = providers[0] != CPU
        cores = usable_cores()
        self._parts = cores if not on_gpu and threads is None and cores > 1 else 1
        # a batch of one keeps every core; parts share one single-threaded engine (sessions run concurrently)
        self._single = PpOcrEngine(config, device, threads=1) if self._parts > 1 else None
        self._pool = ThreadPoolExecutor(self._parts, thread_name_prefix="read-ort") if self._parts > 1 else None
        # On CPU a recognition call is memory bound past about one 320-px line per core (measured:
        # 2 cores best at 2 lines, 16 cores at 16), so chunks follow the core count.
        cpu_px = min(config.rec_batch_px_cpu, 320 * max(2, os.cpu_count() or 1))
        self._rec_batch_px = config.rec_batch_px_cuda if on_gpu else cpu_px
        self._cls_batch = 64 if on_gpu else max(4, 2 * (os.cpu_count() or 1))
        try:
            self._det = ort.InferenceSession(str(config.det_model), options, providers=providers)
            self._rec = ort.InferenceSession(str(config.rec_model), options, providers=providers)
            self._cls = (
                ort.InferenceSession(str(config.cls_model), options, providers=providers)
                if config.cls_model
                else None
            )
            chars = config.dictionary.read_text(encoding="utf-8").split("\n")
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelLoadError(f"cannot load PP-OCR models: {exc}") from exc
        chars = [c for c in chars if c != ""] if chars and chars[-1] == "" else chars
        # CTC alphabet of PaddleOCR: index 0 is the blank, the dictionary follows, then a space.
        self._alphabet = np.array(["", *chars, " "], dtype=object)
        n_classes = self._rec.get_outputs()[0].shape[-1]
        if isinstance(n_classes, int) and n_classes != len(self._alphabet):
            raise ModelLoadError(
                f"dictionary has {len(chars)} entries + blank + space = {len(self._alphabet)}, "
                f"but the recognition model outputs {n_classes} classes"
            )

    # --- the pipeline ---------------------------------------------------------------------------

    def read(
        self, images_rgb: Sequence[np.ndarray], *, batched: bool = True, natural_width: bool = False
    ) -> list[list[OcrLine]]:
        """OCR several RGB images. `batched=False` runs every model call on one image / one line;
        `natural_width=True` (with batched=False) feeds each line at its own width, not its bucket's."""
        if self._pool is None or not batched or len(images_rgb) < 2:
            return self._read(images_rgb, batched=batched, natural_width=natural_width)
        parts = [p for p in np.array_split(np.arange(len(images_rgb)), min(len(images_rgb), self._parts)) if len(p)]
        done = self._pool.map(lambda part: self._single.read([images_rgb[i] for i in part]), parts)
        return [page for pages in done for page in pages]

    def _read(
        self, images_rgb: Sequence[np.ndarray], *, batched: bool, natural_width: bool
    ) -> list[list[OcrLine]]:
        images = [
            np.ascontiguousarray(rgb[:, :, ::-1] if self.config.color_order.upper() == "BGR" else rgb)
            for rgb in images_rgb
        ]
        pages_boxes = self.detect(images, batched=batched)
        crops, owner, flat_boxes = [], [], []
        for page, (image, boxes) in enumerate(zip(images, pages_boxes, strict=True)):
            for box in boxes:
                crops.append(crop_line(image, box))
                owner.append(page)
                flat_boxes.append(box)
        crops = self.orient(crops, batched=batched)
        texts = self.recognize(crops, batched=batched, natural_width=natural_width)
        pages: list[list[OcrLine]] = [[] for _ in images]
        for page, box, rec in zip(owner, flat_boxes, texts, strict=True):
            if rec.score >= self.config.text_score and rec.text.strip():
                pages[page].append(OcrLine(rec.text, rec.score, box, rec.char_scores))
        for i, lines in enumerate(pages):
            order = reading_order(np.array([ln.box for ln in lines]).reshape(-1, 4, 2))
            pages[i] = [lines[j] for j in order]
        return pages

    # --- detection --------------------------------------------------------------------------------

    def detect(self, images: Sequence[np.ndarray], *, batched: bool = True) -> list[np.ndarray]:
        """(N, 4, 2) text boxes per image, in that image's own pixel coordinates.

        Images whose network input has the same shape (same scanner, same camera) share one call.
        """
        prepared = [self._det_input(image) for image in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (tensor, _) in enumerate(prepared):
            groups.setdefault(tensor.shape if batched else (i,), []).append(i)
        out: list[np.ndarray] = [np.zeros((0, 4, 2), np.float32)] * len(images)
        name = self._det.get_inputs()[0].name
        for members in groups.values():
            pixels = sum(prepared[i][0].size for i in members)
            step = max(1, (3 * 2048 * 2048) // max(pixels // len(members), 1))  # bound activation memory
            for start in range(0, len(members), step):
                chunk = members[start : start + step]
                probs = self._det.run(None, {name: np.stack([prepared[i][0] for i in chunk])})[0]
                for i, prob in zip(chunk, probs, strict=True):
                    out[i] = self._det_boxes(prob[0], prepared[i][1])
        return out

    def _det_input(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int, int]]:
        c = self.config
        h, w = image.shape[:2]
        scale = min(1.0, c.det_max_side_len / max(h, w))
        if min(h, w) * scale < c.det_limit_side_len:
            # Small scans are enlarged so characters reach the size DB was trained on, but an
            # extreme banner is not blown up past twice the long-side limit.
            scale = min(c.det_limit_side_len / min(h, w), 2 * c.det_max_side_len / max(h, w))
        rh, rw = max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32)
        resized = cv2.resize(image, (rw, rh))
        # Text filling a whole strip (a single cropped line) needs margin above and below for DB:
        # pad the short side to at least an eighth of the long side (as RapidOCR does).
        pad = max(0, (max(rw // 8, 32) - rh) // 2) if rw > 8 * rh else 0
        if pad:
            resized = cv2.copyMakeBorder(resized, pad, pad, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            resized = resized[: (resized.shape[0] // 32) * 32]
        x = (resized.astype(np.float32) / 255.0 - np.array(c.det_mean, np.float32)) / np.array(
            c.det_std, np.float32
        )
        return np.ascontiguousarray(x.transpose(2, 0, 1)), (h, w, rh, rw, pad)

    def _det_boxes(self, prob: np.ndarray, geometry: tuple[int, int, int, int, int]) -> np.ndarray:
        h, w, rh, rw, pad = geometry
        ph, pw = prob.shape
        boxes = db_boxes(prob, self.config.db, dest_wh=(pw, ph))
        boxes[:, :, 1] -= pad
        boxes[:, :, 0] *= w / rw
        boxes[:, :, 1] *= h / rh
        boxes[:, :, 0] = np.clip(boxes[:, :, 0], 0, w - 1)
        boxes[:, :, 1] = np.clip(boxes[:, :, 1], 0, h - 1)
        return drop_tiny(boxes)

    # --- direction classification -----------------------------------------------------------------

    def orient(self, crops: list[np.ndarray], *, batched: bool = True) -> list[np.ndarray]:
        """Turn upside-down lines (the classifier's "180" label above `cls_thresh`) right way up."""
        if self._cls is None or not crops:
            return crops
        _, ch, cw = self.config.cls_shape
        tensors = np.stack([_resize_pad(c, ch, cw, cw) for c in crops])
        step = self._cls_batch if batched else 1
        probs = np.concatenate(
            [
                self._cls.run(None, {self._cls.get_inputs()[0].name: tensors[i : i + step]})[0]
                for i in range(0, len(tensors), step)
            ]
        )
        upside = self.config.cls_labels.index("180") if "180" in self.config.cls_labels else None
        out = []
        for crop, p in zip(crops, probs, strict=True):
            flip = upside is not None and int(p.argmax()) == upside and p[upside] > self.config.cls_thresh
            out.append(cv2.rotate(crop, cv2.ROTATE_180) if flip else crop)
        return out

    # --- recognition ------------------------------------------------------------------------------

    def natural_width(self, crop: np.ndarray) -> int:
        """Width a line needs at the recognition height (at least `rec_min_width`)."""
        h, w = crop.shape[:2]
        return max(self.config.rec_min_width, math.ceil(self.config.rec_height * w / max(h, 1)))

    def bucket_width(self, crop: np.ndarray) -> int:
        need = self.natural_width(crop)
        return next((b for b in self.config.rec_width_buckets if b >= need), self.config.rec_width_buckets[-1])

    def recognize(
        self, crops: list[np.ndarray], *, batched: bool = True, natural_width: bool = False
    ) -> list[Recognized]:
        """Text and character confidences per crop.

        Every crop is resized to the recognition height and zero-padded on the right to its width
        bucket, so a line's input tensor does not depend on its batch-mates. Batched: crops of one
        bucket run together (chunks of `rec_batch_px_cpu` / `_cuda` pixels of width); otherwise one call per line.
        `natural_width` (line by line only) pads to the line's own width instead, as PaddleOCR
        does with a batch of one: the reference the bucket padding is compared against.
        """
        if not crops:
            return []
        height = self.config.rec_height
        results: list[Recognized] = [Recognized("", 0.0, ())] * len(crops)
        if not batched:
            for i, crop in enumerate(crops):
                width = self.natural_width(crop) if natural_width else self.bucket_width(crop)
                results[i] = self._run_rec(np.stack([_resize_pad(crop, height, width, width)]))[0]
            return results
        buckets: dict[int, list[int]] = {}
        for i, crop in enumerate(crops):
            buckets.setdefault(self.bucket_width(crop), []).append(i)
        for width, members in sorted(buckets.items()):
            step = max(1, self._rec_batch_px // width)
            for start in range(0, len(members), step):
                chunk = members[start : start + step]
                batch = np.stack([_resize_pad(crops[i], height, width, width) for i in chunk])
                for i, res in zip(chunk, self._run_rec(batch), strict=True):
                    results[i] = res
        return results

    def _run_rec(self, batch: np.ndarray) -> list[Recognized]:
        probs = self._rec.run(None, {self._rec.get_inputs()[0].name: batch})[0]
        return [self._ctc_decode(p) for p in probs]

    def _ctc_decode(self, probs: np.ndarray) -> Recognized:
        idx = probs.argmax(axis=1)
        conf = probs.max(axis=1)
        keep = np.ones(len(idx), dtype=bool)
        keep[1:] = idx[1:] != idx[:-1]  # collapse repeats, then drop blanks
        keep &= idx != 0
        if not keep.any():
            return Recognized("", 0.0, ())
        scores = tuple(round(float(c), 4) for c in conf[keep])
        return Recognized("".join(self._alphabet[idx[keep]]), float(conf[keep].mean()), scores)


def _resize_pad(crop: np.ndarray, height: int, max_width: int, pad_width: int) -> np.ndarray:
    """Resize to `height` keeping the aspect (at most `max_width` wide), normalise to [-1, 1],
    pad with zeros on the right to `pad_width`; CHW float32."""
    h, w = crop.shape[:2]
    width = min(max_width, max(1, math.ceil(height * w / max(h, 1))))
    resized = cv2.resize(crop, (width, height)).astype(np.float32)
    out = np.zeros((3, height, pad_width), dtype=np.float32)
    out[:, :, :width] = (resized.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
    return out
