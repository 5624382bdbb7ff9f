"""`see`: YOLO-format object detection, batched on CPU or GPU.

Wire API (served at `POST /v1/see`, multipart field `image`):
    SeeRequest(image: Blob, classes: list[str] | None = None, min_score: float = 0.25)
    SeeResponse(detections=[Box(xyxy=[x1, y1, x2, y2], class_id, class_name, score)],
                image_width, image_height, model={name, version, alias})
    A corrupt image is a 400 and a decompression bomb a 413 for that item only.

Array API (the stream pipeline calls this, no wire layer):
    det = Detector(backend="auto", rect=None)          # torch fp16 on CUDA, onnxruntime on CPU
    det.load(artifact_dir, "cpu" | "cuda:0")
    dets: list[Detections] = det.detect_arrays(frames_rgb_uint8, classes=["car"], min_score=0.25)
    # Detections: xyxy float32 [N, 4] (source pixels), class_id int64 [N], score float32 [N],
    #             names (all class names), class_names (per box), image_width, image_height

    # many cameras -> one batched call:
    from gpu import BatchPolicy, DynamicBatcher
    batcher = DynamicBatcher(det.detect_arrays, BatchPolicy(max_batch_size=32, max_wait_ms=10, max_queue_per_key=2))
    batcher.submit("cam-1", frame).add_done_callback(...)

Artifact (`prepare_default(shared_dir, out_dir)` / `prepare_artifact(onnx, out_dir)`): `model.onnx`
(weights dequantised to fp32, Detect head cut before its decode so batch/height/width are free),
`hub.json` (class names, imgsz, strides, reg_max, letterbox pad 114, RGB/255, torch_arch) and a
small `sample.jpg` for warm-up. Any Ultralytics YOLO detection export (a user's fine-tune) goes
through `prepare_artifact` and loads the same way.
"""

from models.detection.artifact import DetectorSpec, download_weights, prepare_artifact, prepare_default
from models.detection.capability import Box, Detector, SeeRequest, SeeResponse
from models.detection.detections import Detections

__all__ = [
    "Box",
    "Detections",
    "Detector",
    "DetectorSpec",
    "SeeRequest",
    "SeeResponse",
    "download_weights",
    "prepare_artifact",
    "prepare_default",
]
