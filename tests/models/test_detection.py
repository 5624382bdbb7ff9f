"""`see`: artifact, wire path (per-item errors), filters and the array API on the real YOLOv8n."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from hub.contract import ModelInfo, run_batch
from hub.errors import InvalidInput, ModelLoadError, PayloadTooLarge
from hub.media import decode_image
from models.catalogue import CAPABILITIES
from models.detection import Detector, DetectorSpec, SeeRequest, SeeResponse, prepare_default
from tests.conftest import require_shared


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, shared_dir) -> Path:
    out = tmp_path_factory.mktemp("yolov8n-coco")
    prepare_default(shared_dir, out)
    return out


@pytest.fixture(scope="module")
def detector(artifact) -> Detector:
    det = Detector()
    det.load(artifact, "cpu")
    return det


def bus_jpg() -> bytes:
    return require_shared("data", "images", "bus.jpg").read_bytes()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels but carries almost no data (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_catalogue_points_here():
    entry = CAPABILITIES["see"]
    assert entry.load_class() is Detector and entry.default_model == "yolov8n-coco"
    assert entry.prepare_default() is prepare_default


def test_artifact_records_what_a_loader_needs(artifact):
    doc = json.loads((artifact / "hub.json").read_text())
    assert (doc["capability"], doc["format"]) == ("see", "yolo-onnx")
    meta = doc["metadata"]
    assert all(isinstance(v, (str, int, float, bool)) for v in meta.values())  # flat: becomes MLflow tags
    names = json.loads(meta["names"])
    assert len(names) == meta["num_classes"] == 80 and names[0] == "person" and names[5] == "bus"
    assert (meta["imgsz"], meta["letterbox_pad"], meta["normalize"]) == ("640,640", 114, "rgb/255")
    assert meta["output_format"] == "raw-heads" and meta["strides"] == "8,16,32"
    assert (artifact / "model.onnx").is_file() and (artifact / "sample.jpg").is_file()


def test_any_copy_of_the_artifact_loads_and_foreign_artifacts_are_refused(artifact, tmp_path):
    user_copy = tmp_path / "my-version"
    shutil.copytree(artifact, user_copy)
    det = Detector(warmup=False)
    det.load(user_copy, "cpu")
    assert det.spec.names[2] == "car"
    doc = json.loads((user_copy / "hub.json").read_text())
    doc["capability"] = "read"
    (user_copy / "hub.json").write_text(json.dumps(doc))
    with pytest.raises(ModelLoadError):
        DetectorSpec.read(user_copy)


def test_bus_photo_has_the_bus_and_the_people(detector):
    [resp] = run_batch(detector, [SeeRequest(image=bus_jpg())], ModelInfo(name="yolov8n-coco", version="1"))
    assert isinstance(resp, SeeResponse) and resp.model.name == "yolov8n-coco"
    assert (resp.image_width, resp.image_height) == (810, 1080)
    names = [d.class_name for d in resp.detections]
    assert set(names) == {"bus", "person"} and names.count("person") >= 4
    bus = next(d for d in resp.detections if d.class_name == "bus")
    assert bus.score > 0.8 and bus.xyxy[2] - bus.xyxy[0] > 700  # the bus spans the photo
    assert all(0 <= d.xyxy[0] < d.xyxy[2] <= 810 and 0 <= d.xyxy[1] < d.xyxy[3] <= 1080 for d in resp.detections)
    assert [d.score for d in resp.detections] == sorted((d.score for d in resp.detections), reverse=True)
    SeeResponse.model_validate_json(resp.model_dump_json())  # the wire form round-trips


def test_bad_items_fail_alone(detector):
    requests = [
        SeeRequest(image=bus_jpg()),
        SeeRequest(image=b"definitely not an image"),
        SeeRequest(image=png_header_only(20000, 20000)),
        SeeRequest(image=bus_jpg(), classes=["unicorn"]),
        SeeRequest(image=bus_jpg(), classes=["bus"], min_score=0.5),
    ]
    out = detector.predict_batch(requests)
    assert isinstance(out[0], SeeResponse) and len(out[0].detections) >= 5
    assert isinstance(out[1], InvalidInput) and out[1].status_code == 400
    assert isinstance(out[2], PayloadTooLarge) and out[2].status_code == 413
    assert isinstance(out[3], InvalidInput) and out[3].field == "classes"
    assert [d.class_name for d in out[4].detections] == ["bus"]


@pytest.mark.parametrize(
    ("classes", "min_score"),
    [(None, 0.25), (None, 0.6), (["person"], 0.25), (["person", "bus"], 0.5), (["car"], 0.25)],
)
def test_filters_equal_filtering_the_full_answer(detector, classes, min_score):
    [full] = detector.predict_batch([SeeRequest(image=bus_jpg())])
    [mixed, filtered] = detector.predict_batch(
        [SeeRequest(image=bus_jpg(), min_score=0.05), SeeRequest(image=bus_jpg(), classes=classes, min_score=min_score)]
    )
    expected = [d for d in full.detections if d.score > min_score and (classes is None or d.class_name in classes)]
    assert filtered.detections == expected
    assert len(mixed.detections) >= len(full.detections)  # a lower threshold in the same batch adds boxes


def test_detect_arrays_is_columnar_and_frozen(detector):
    frame = decode_image(bus_jpg())
    [d] = detector.detect_arrays([frame], classes=["person"], min_score=0.3)
    assert d.xyxy.dtype == np.float32 and d.xyxy.shape == (len(d), 4)
    assert d.class_id.dtype == np.int64 and d.score.dtype == np.float32
    assert set(d.class_name) == {"person"} and (d.image_width, d.image_height) == (810, 1080)
    with pytest.raises(ValueError):
        d.xyxy[0, 0] = 1.0
    with pytest.raises(InvalidInput):
        detector.detect_arrays([frame[..., 0]])


def test_sample_request_answers(detector):
    [resp] = detector.predict_batch([detector.sample_request()])
    assert isinstance(resp, SeeResponse) and any(d.class_name == "bus" for d in resp.detections)


def test_closed_or_unloaded_detector_is_not_ready(artifact):
    from hub.errors import NotReady

    det = Detector(warmup=False)
    with pytest.raises(NotReady):
        det.detect_arrays([np.zeros((8, 8, 3), np.uint8)])
    det.load(artifact, "cpu")
    assert len(det.detect_arrays([np.zeros((8, 8, 3), np.uint8)])) == 1
    det.close()
    with pytest.raises(NotReady):
        det.predict_batch([det.sample_request()])


@pytest.mark.parametrize("batch", [1, 2, 3, 5])
def test_a_cpu_batch_split_per_core_gives_the_single_call_answer(artifact, batch):
    """OrtBackend runs a CPU batch as one chunk per core (models/detection/backends.py): the
    prediction is the one a single call on the whole batch gives."""
    import torch

    from models.detection.backends import OrtBackend

    spec = DetectorSpec.read(artifact)
    split, whole = OrtBackend(artifact, spec, "cpu"), OrtBackend(artifact, spec, "cpu", threads=1)
    x = torch.rand(batch, 3, 320, 416, generator=torch.Generator().manual_seed(batch))
    assert whole._split == 1
    assert torch.allclose(split(x), whole(x), atol=1e-4)
