"""The `see` capability: `Detector` (wire schema + batched detection on any device)."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field

from gpu.collate import DeviceCollator, Letterbox, boxes_to_source, letterbox_params
from gpu.device import is_cuda, pick_device, warm_up
from gpu.nms import batched_nms
from hub.contract import Blob, Response, WireModel, prepare_each
from hub.errors import HubError, InvalidInput, ModelLoadError, NotReady
from hub.media import PixelBudget, decode_image
from models.detection.artifact import SAMPLE_FILE, DetectorSpec
from models.detection.backends import Backend, make_backend
from models.detection.detections import Detections

log = logging.getLogger(__name__)

DEFAULT_BATCH_BUCKETS_CUDA = (1, 2, 4, 8, 16, 32, 64)


class SeeRequest(WireModel):
    """One image to analyse. `classes` keeps only those class names; `min_score` drops weaker boxes."""

    image: Blob = Field(description="JPEG/PNG/BMP/WebP bytes (base64 in JSON)")
    classes: list[str] | None = Field(default=None, description="class names to keep, e.g. ['car', 'bus']")
    min_score: float = Field(default=0.25, ge=0.0, le=1.0)


class Box(WireModel):
    xyxy: list[float] = Field(min_length=4, max_length=4, description="x1, y1, x2, y2 in source pixels")
    class_id: int
    class_name: str
    score: float


class SeeResponse(Response):
    detections: list[Box]
    image_width: int
    image_height: int

    @classmethod
    def from_detections(cls, d: Detections) -> SeeResponse:
        boxes = [
            Box(xyxy=[round(float(v), 2) for v in xyxy], class_id=int(c), class_name=d.names[int(c)], score=round(float(s), 4))
            for xyxy, c, s in zip(d.xyxy.tolist(), d.class_id.tolist(), d.score.tolist(), strict=True)
        ]
        return cls(detections=boxes, image_width=d.image_width, image_height=d.image_height)


class Detector:
    """YOLO-format object detector: batched letterbox, inference and NMS on one device.

    Example::

        det = Detector()                                   # backend from the device: torch on CUDA
        det.load(Path("artifacts/yolov8n-coco"), "cpu")    # onnxruntime on CPU
        [d] = det.detect_arrays([rgb_frame], classes=["car"], min_score=0.3)
        [resp] = det.predict_batch([SeeRequest(image=jpeg_bytes)])
    """

    name: ClassVar[str] = "see"
    request_type: ClassVar[type] = SeeRequest
    response_type: ClassVar[type] = SeeResponse
    upload_field: ClassVar[str] = "image"

    def __init__(
        self,
        backend: str = "auto",
        *,
        rect: bool | None = None,
        fp16: bool | None = None,
        max_batch_size: int = 64,
        batch_buckets: Sequence[int] | None = None,
        warmup: bool = True,
    ) -> None:
        self.backend_kind = backend
        self._rect = rect
        self._fp16 = fp16
        self.max_batch_size = max_batch_size
        self._batch_buckets = tuple(batch_buckets) if batch_buckets is not None else None
        self._warmup = warmup
        self.spec: DetectorSpec | None = None
        self.backend: Backend | None = None
        self._artifact_dir: Path | None = None
        # All device work runs on ONE thread owned by the detector: cudnn's autotuned plans are
        # cached per thread (a warm-up on the loading thread would not help a batcher's thread)
        # and one forward at a time is what the device wants anyway.
        self._device_thread: ThreadPoolExecutor | None = None
        self._device_thread_id: int | None = None

    # ------------------------------------------------------------------ lifecycle
    def load(self, artifact_dir: Path, device: str = "cpu") -> None:
        artifact_dir = Path(artifact_dir)
        spec = DetectorSpec.read(artifact_dir)
        device = pick_device(device)
        backend = make_backend(self.backend_kind, artifact_dir, spec, device, self._fp16)
        self.spec, self.backend, self._artifact_dir = spec, backend, artifact_dir
        self.device = device
        self.rect = spec.rect if self._rect is None else self._rect
        if self.rect and not spec.dynamic_hw:
            raise ModelLoadError("rect inputs need a raw-heads artifact (dynamic height/width)")
        self.batch_buckets = self._batch_buckets
        if self.batch_buckets is None:
            self.batch_buckets = DEFAULT_BATCH_BUCKETS_CUDA if is_cuda(device) else ()
        self.collate = DeviceCollator(device, backend.dtype, spec.letterbox_pad)
        if self._device_thread is None:
            self._device_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="see-device")
            self._device_thread_id = self._device_thread.submit(threading.get_ident).result()
        self._name_to_id = {n: i for i, n in enumerate(spec.names)}
        if self._warmup:
            self.warm_up()
        log.info("see: %s on %s (%s), rect=%s", artifact_dir.name, device, backend.name, self.rect)

    def warm_up(self) -> float:
        """One pass per batch bucket (cudnn picks kernels per shape) on a 720p frame holding the
        sample photo, so the resize, the model and the NMS kernels all load before real traffic."""
        self._require()
        frame = self._warmup_frame()
        sizes = [b for b in self.batch_buckets if b <= self.max_batch_size] or [1]
        run = lambda: [self.detect_arrays([frame] * n) for n in sizes]  # noqa: E731
        return self._device_thread.submit(warm_up, run, self.device, 1).result()

    def _warmup_frame(self) -> np.ndarray:
        canvas = np.full((720, 1280, 3), 114, np.uint8)
        try:
            photo = decode_image(self.sample_request().image)
        except HubError:
            return canvas
        photo = photo.repeat(2, axis=0).repeat(2, axis=1)[:720, :1280]  # objects at a usual scale
        canvas[: photo.shape[0], : photo.shape[1]] = photo
        return canvas

    def close(self) -> None:
        """Stop the device thread (optional: it also ends when the detector is garbage-collected)."""
        if self._device_thread is not None:
            self._device_thread.shutdown(wait=True)
            self._device_thread, self._device_thread_id = None, None

    def sample_request(self) -> SeeRequest:
        path = (self._artifact_dir or Path(".")) / SAMPLE_FILE
        if path.is_file():
            return SeeRequest(image=path.read_bytes())
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (114, 114, 114)).save(buf, format="PNG")
        return SeeRequest(image=buf.getvalue())

    def _require(self) -> DetectorSpec:
        if self.spec is None or self.backend is None or self._device_thread is None:
            raise NotReady("the detector is not loaded (or was closed)")
        return self.spec

    # ------------------------------------------------------------------ wire path
    def predict_batch(self, requests: Sequence[SeeRequest]) -> list[SeeResponse | HubError]:
        self._require()
        budget = PixelBudget()  # the decoded pixels of one batch are capped, not only each image's

        def prepare(req: SeeRequest) -> np.ndarray:
            self._class_ids(req.classes)  # unknown names are this item's error, not the batch's
            return decode_image(req.image, field="image", budget=budget)

        batch = prepare_each(requests, prepare)
        if batch.items:
            floor = min(requests[i].min_score for i in batch.slots)
            for i, det in zip(batch.slots, self.detect_arrays(batch.items, min_score=floor), strict=True):
                req = requests[i]
                keep = det.score > req.min_score  # strict, like the NMS threshold
                if req.classes is not None:
                    keep &= np.isin(det.class_id, self._class_ids(req.classes))
                batch.out[i] = SeeResponse.from_detections(det.filter(keep))
        return batch.out

    def _class_ids(self, classes: Sequence[str] | None) -> list[int] | None:
        if classes is None:
            return None
        unknown = [c for c in classes if c not in self._name_to_id]
        if unknown:
            raise InvalidInput(f"unknown class names {unknown}; this model knows {len(self._name_to_id)} COCO-style names", field="classes")
        return [self._name_to_id[c] for c in classes]

    # ------------------------------------------------------------------ array path (streams)
    def detect_arrays(
        self,
        frames: Sequence[np.ndarray],
        classes: Sequence[str] | None = None,
        min_score: float | None = None,
        *,
        iou: float | None = None,
        max_det: int | None = None,
    ) -> list[Detections]:
        """Detect on decoded RGB uint8 frames (HxWx3, any mix of sizes); one `Detections` per frame."""
        spec = self._require()
        conf = spec.conf_default if min_score is None else float(min_score)
        class_ids = self._class_ids(classes)
        class_tensor = torch.tensor(class_ids, device=self.device) if class_ids is not None else None
        results: list[Detections | None] = [None] * len(frames)
        boxes = [
            letterbox_params(f.shape[:2], spec.imgsz, stride=spec.stride, rect=self.rect) if f.ndim == 3 else None
            for f in frames
        ]
        buckets: dict[tuple[int, int], list[int]] = {}
        for i, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
            if box is None or frame.shape[2] != 3:
                raise InvalidInput(f"frame {i} must be HxWx3 RGB, got shape {frame.shape}")
            buckets.setdefault(box.out_hw, []).append(i)
        for idx in buckets.values():
            for start in range(0, len(idx), self.max_batch_size):
                chunk = idx[start : start + self.max_batch_size]
                args = ([frames[i] for i in chunk], [boxes[i] for i in chunk], conf, iou, max_det, class_tensor)
                if threading.get_ident() == self._device_thread_id:
                    dets = self._run_chunk(*args)
                else:
                    dets = self._device_thread.submit(self._run_chunk, *args).result()
                for i, det in zip(chunk, dets, strict=True):
                    results[i] = det
        return results  # type: ignore[return-value]

    def _run_chunk(
        self,
        frames: list[np.ndarray],
        boxes: list[Letterbox],
        conf: float,
        iou: float | None,
        max_det: int | None,
        classes: torch.Tensor | None,
    ) -> list[Detections]:
        spec = self.spec
        n = len(frames)
        padded = next((b for b in self.batch_buckets if b >= n), n)
        # runs on the device thread (see __init__)
        batch = self.collate(frames, boxes)
        if padded > n:  # few distinct batch shapes: cudnn/allocator reuse their plans
            batch = torch.cat((batch, batch[:1].expand(padded - n, -1, -1, -1)), 0)
        pred = self.backend(batch)[:n]
        kept = batched_nms(
            pred, conf, spec.iou if iou is None else iou, classes, spec.max_det if max_det is None else max_det
        )
        xyxy = boxes_to_source(kept.xyxy, kept.batch_index, boxes)
        table = torch.cat(
            (xyxy, kept.scores[:, None], kept.class_ids[:, None].float(), kept.batch_index[:, None].float()), 1
        ).cpu().numpy()  # ONE device-to-host copy per chunk
        out = []
        bidx = table[:, 6].astype(np.int64)
        for i, box in enumerate(boxes):
            rows = table[bidx == i]
            out.append(
                Detections(
                    rows[:, :4].astype(np.float32),
                    rows[:, 5].astype(np.int64),
                    rows[:, 4].astype(np.float32),
                    spec.names,
                    box.src_w,
                    box.src_h,
                )
            )
        return out
