"""`see` training: dataset YAML, champion weights -> Ultralytics checkpoint, mAP of an artifact, and
the pipeline (`hub train see` / `hub eval see`) with its champion gate.

Training runs on a few images for 1 epoch at a small image size: it tests the mechanics, not the
accuracy (docs/benchmarks.md has the full run). Run under `flock /tmp/hub-heavy.lock`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from hub.errors import InvalidInput
from tests.conftest import require_shared
from training.see.data import DetectionData, label_path
from training.see.evaluate import ImageResult, match_predictions, score_results

CARS = ("data", "detection", "overhead-cars", "data.yaml")
TINY_TRAIN, TINY_VAL, TINY_IMGSZ = 6, 4, 160


@pytest.fixture(scope="session")
def cars() -> DetectionData:
    return DetectionData.read(require_shared(*CARS))


@pytest.fixture(scope="session")
def coco_artifact(tmp_path_factory, shared_dir) -> Path:
    from models.detection import prepare_default

    out = tmp_path_factory.mktemp("coco")
    prepare_default(shared_dir, out)
    return out


@pytest.fixture
def tiny(cars, tmp_path) -> DetectionData:
    return cars.subset(tmp_path / "tiny", train=TINY_TRAIN, val=TINY_VAL)


# ---- data ---------------------------------------------------------------------------------------

def test_shared_split_reads_like_ultralytics(cars):
    assert cars.names == ("car",) and (len(cars.train), len(cars.val)) == (167, 37)
    cls, xyxy = cars.labels(cars.val[0], 640, 640)
    assert len(cls) == len(xyxy) > 0 and (cls == 0).all()
    assert (xyxy[:, 2] > xyxy[:, 0]).all() and (xyxy >= -1).all() and (xyxy <= 641).all()


@pytest.mark.parametrize("doc, message", [
    ({"train": "a", "val": "b"}, "needs 'train', 'val' and 'names'"),
    ({"train": "nowhere", "val": "nowhere", "names": ["car"]}, "is not a folder, list file or image"),
    ("- just a list", "needs 'train'"),
])
def test_bad_dataset_yaml_is_refused(tmp_path, doc, message):
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump(doc) if isinstance(doc, dict) else doc)
    with pytest.raises(InvalidInput, match=message):
        DetectionData.read(path)


@pytest.mark.parametrize("image, label", [
    ("/d/train/images/a.jpg", "/d/train/labels/a.txt"),
    ("/d/images/train/b.png", "/d/labels/train/b.txt"),
    ("/images/x/images/c.jpg", "/images/x/labels/c.txt"),  # only the last /images/ changes
])
def test_label_path_follows_ultralytics(image, label):
    assert label_path(Path(image)) == Path(label)


def test_subset_lists_the_first_images(cars, tmp_path):
    small = cars.subset(tmp_path, train=3, val=2)
    assert small.train == cars.train[:3] and small.val == cars.val[:2] and small.names == cars.names
    assert small.fingerprint() != cars.fingerprint()


def test_ultralytics_gets_the_images_the_hub_read_from_any_folder(cars, tmp_path, monkeypatch):
    # The shared YAML says `path: .`; Ultralytics resolved that against its working directory, so
    # `hub train see --data ../shared/.../data.yaml` failed from the repository ("missing path val/images").
    from ultralytics.data.utils import check_det_dataset

    monkeypatch.chdir(tmp_path)
    checked = check_det_dataset(str(cars.for_ultralytics(tmp_path / "resolved")), autodownload=False)
    assert checked["names"] == {0: "car"}
    listed = Path(checked["train"]).read_text().split()
    assert [Path(p) for p in listed] == list(cars.train) and all(Path(p).is_absolute() for p in listed)


# ---- metrics ------------------------------------------------------------------------------------

def _result(true, pred, pred_cls=None, true_cls=None) -> ImageResult:
    true, pred = np.asarray(true, np.float32).reshape(-1, 4), np.asarray(pred, np.float32).reshape(-1, 4)
    return ImageResult(Path("x.jpg"), np.asarray(true_cls or [0] * len(true)), true,
                       np.asarray(pred_cls or [0] * len(pred)), pred, np.linspace(0.9, 0.5, len(pred)).astype(np.float32))


@pytest.mark.parametrize("pred, pred_cls, expected", [
    ([0, 0, 10, 10], None, [True] * 10),  # exact: right at every IoU threshold
    ([0, 0, 10, 8], None, [True] * 7 + [False] * 3),  # IoU 0.8
    ([0, 0, 10, 10], [1], [False] * 10),  # right place, wrong class
    ([20, 20, 30, 30], None, [False] * 10),  # nowhere near
])
def test_match_predictions_at_iou_thresholds(pred, pred_cls, expected):
    assert match_predictions(_result([0, 0, 10, 10], pred, pred_cls))[0].tolist() == expected


def test_a_duplicate_box_is_a_false_positive():
    correct = match_predictions(_result([0, 0, 10, 10], [[0, 0, 10, 10], [0, 0, 10, 10]]))
    assert correct[:, 0].tolist() == [True, False]


@pytest.mark.parametrize("preds, map50_range", [
    ([[0, 0, 10, 10], [50, 50, 60, 60]], (0.99, 1.0)),  # both found
    ([[0, 0, 10, 10]], (0.45, 0.55)),  # half the boxes found
    ([], (0.0, 0.0)),
])
def test_score_results_maps(preds, map50_range):
    score = score_results([_result([[0, 0, 10, 10], [50, 50, 60, 60]], preds)], ("car",))
    assert map50_range[0] <= score.map50 <= map50_range[1] and score.boxes == 2


# ---- champion weights -> Ultralytics checkpoint ----------------------------------------------------

def test_checkpoint_reproduces_the_served_artifact(coco_artifact, cars, tmp_path):
    """Unfused model with calibrated BatchNorm == the fused ONNX artifact (eval mode), and
    Ultralytics loads the checkpoint as a trainable detect model."""
    import torch
    from PIL import Image

    from models.detection.artifact import DetectorSpec
    from models.detection.backends import OrtBackend
    from models.detection.checkpoint import trainable_model, write_checkpoint

    frames = [np.asarray(Image.open(p).convert("RGB")) for p in cars.train[:2]]
    model = trainable_model(coco_artifact, frames)
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and all(float(m.running_var.min()) > 0 for m in bn)
    batch = torch.rand(2, 3, 256, 320)
    ort = OrtBackend(coco_artifact, DetectorSpec.read(coco_artifact))
    with torch.no_grad():
        ours = model(batch)[0]
    assert float((ours - ort(batch)).abs().max()) < 1e-2

    from gpu.compat import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    path = write_checkpoint(coco_artifact, tmp_path / "base.pt", frames)
    yolo = YOLO(str(path))
    assert yolo.task == "detect" and yolo.names[2] == "car" and yolo.ckpt


# ---- pipeline: train, register, gate; eval ----------------------------------------------------------

def _register_coco(coco_artifact) -> None:
    from registry.store import MlflowStore

    store = MlflowStore.from_settings()
    version = store.register("yolov8n-coco", coco_artifact, metadata={"capability": "see", "format": "yolo-onnx"})
    store.set_alias("yolov8n-coco", "champion", version, reason="test bootstrap")


def _cli(*args: str):
    from cli.main import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_train_registers_and_a_worse_finetune_does_not_move_champion(hub_home, coco_artifact, tiny):
    """Must-show 2: v1 (from the COCO champion) becomes champion; v2, trained at an image size where
    cars are a pixel wide, scores lower and stays challenger; both scores are printed."""
    import mlflow

    from hub.settings import get_settings
    from registry.store import MlflowStore

    _register_coco(coco_artifact)
    common = ("train", "see", "--data", str(tiny.yaml_path), "--model", "tiny-cars", "--epochs", "1", "--batch", "4")
    first = _cli(*common, "--imgsz", str(TINY_IMGSZ))
    assert "registered: models:/tiny-cars/1 (@champion)" in first and "no champion yet" in first
    worse = _cli(*common, "--imgsz", "32", "--base", "models:/yolov8n-coco@champion")
    store = MlflowStore.from_settings()
    assert store.alias_version("tiny-cars", "champion") == "1"
    assert store.alias_version("tiny-cars", "challenger") == "2"
    challenger = next(line for line in worse.splitlines() if line.startswith("challenger v2: mAP50 "))
    champion = next(line for line in worse.splitlines() if line.startswith("champion   v1: mAP50 "))
    assert "does not beat champion v1" in worse and "registered: models:/tiny-cars/2 (@challenger)" in worse
    map_of = lambda line: float(line.split("mAP50-95 ")[1].split()[0])  # noqa: E731
    assert map_of(challenger) <= map_of(champion)

    client = mlflow.MlflowClient(get_settings().tracking_uri)
    run = client.get_run(client.get_model_version("tiny-cars", "1").run_id)
    assert {"val_map50", "val_map50_95", "val_precision", "val_recall", "val_map50_car", "train_box_loss",
            "metrics_mAP50"} <= set(run.data.metrics)
    assert run.data.params["imgsz"] == str(TINY_IMGSZ) and run.data.tags["hub.gate.promoted"] == "True"
    logged = {a.path for folder in ("report", "ultralytics", "served-eval")
              for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"report/model_card.md", "report/val_predictions.jpg", "ultralytics/confusion_matrix.png",
            "served-eval/PR_curve.png"} <= logged

    printed = _cli("eval", "see", "--data", str(tiny.yaml_path), "--model", "models:/tiny-cars/1")
    assert "tiny-cars v1" in printed and all(k in printed for k in ("mAP50 ", "mAP50-95 ", "precision ", "recall "))
    assert f"mAP50-95 {map_of(champion):.4f}" in printed  # the gate scored what eval scores


def test_reviewed_events_export_then_train(hub_home, coco_artifact, cars, tmp_path):
    """Must-show 4: events on real frames, reviewed, exported as YOLO, then `hub train see` on it."""
    from tests.pipelines.test_review import _fetch, _reviewed_store
    from training.see.reviewed import export_yolo

    _register_coco(coco_artifact)
    book = _reviewed_store(tmp_path, cars.train[:8], cars, ["confirm"] * 6 + ["reject"] * 2)
    summary = export_yolo(book.list_events(state="reviewed"), _fetch(book.store), tmp_path / "reviewed")
    assert summary.relabel == 2
    out = _cli("train", "see", "--data", str(tmp_path / "reviewed" / "data.yaml"), "--model", "reviewed-cars",
               "--epochs", "1", "--imgsz", str(TINY_IMGSZ), "--batch", "4")
    assert "registered: models:/reviewed-cars/1 (@champion)" in out
    assert f"({summary.train} train / {summary.val} val images" in out
