"""Ultralytics fine-tuning of a hub detector, offline, with a progress bar and per-epoch MLflow metrics.

`finetune(base_artifact, data, work_dir, params)`:
1. writes an Ultralytics checkpoint from the base artifact's weights (`models.detection.checkpoint`,
   BatchNorm statistics calibrated on a few training images);
2. runs `YOLO(ckpt).train(...)` on the GPU when one is present, else the CPU, with Ultralytics' own
   integrations (its MLflow callback writes `./mlflow.db`) switched off: the caller's MLflow run
   gets the per-epoch losses and validation metrics from a callback here instead;
3. exports `best.pt` to ONNX and turns it into a hub artifact (`prepare_artifact`: fp32, head cut
   before decode, free batch) with the base artifact's warm-up sample.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hub.errors import HubError
from training.see.data import DetectionData

INTEGRATIONS = ("clearml", "comet", "dvc", "hub", "mlflow", "neptune", "raytune", "tensorboard", "wandb")
FONT_CANDIDATES = (Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),)


@dataclass(frozen=True)
class FinetuneParams:
    epochs: int = 50
    imgsz: int = 640
    batch: int = 16
    device: str = "auto"
    seed: int = 0
    workers: int = 0  # dataloader processes; 0 keeps CI and small machines predictable
    calibration_images: int = 16
    patience: int = 100

    def as_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class FinetuneResult:
    artifact_dir: Path
    run_dir: Path  # Ultralytics' save_dir: results.csv, plots, weights
    device: str
    train_s: float
    epochs_run: int


def prepare_ultralytics() -> None:
    """Ultralytics offline: a local font for its plots (it downloads Arial.ttf otherwise) and no
    third-party loggers (the hub logs to its own MLflow run). Both live in Ultralytics' own config
    folder (`YOLO_CONFIG_DIR`, which `hub.settings` points under HUB_HOME)."""
    from gpu.compat import import_ultralytics

    import_ultralytics()
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    fonts = Path(USER_CONFIG_DIR)
    fonts.mkdir(parents=True, exist_ok=True)
    source = next((f for f in FONT_CANDIDATES if f.is_file()), None)
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if source is not None and not (fonts / name).exists():
            shutil.copyfile(source, fonts / name)

    off = {k: False for k in INTEGRATIONS if SETTINGS.get(k) is not False and k in SETTINGS}
    if off:
        SETTINGS.update(off)


def _epoch_logger(log_metrics: Callable[[dict[str, float], int], None], epochs: int):
    from tqdm.auto import tqdm

    bar = tqdm(total=epochs, desc="fine-tuning", unit="epoch")

    def on_fit_epoch_end(trainer) -> None:
        losses = trainer.label_loss_items(trainer.tloss, prefix="train")
        metrics = {**losses, **(trainer.metrics or {}), **trainer.lr}
        clean = {k.replace("(B)", "").replace("/", "_").replace("-", "_"): float(v) for k, v in metrics.items()}
        log_metrics({k: v for k, v in clean.items() if math.isfinite(v)}, trainer.epoch + 1)
        bar.set_postfix(box=f"{clean.get('train_box_loss', 0):.3f}", mAP50=f"{clean.get('metrics_mAP50', 0):.3f}")
        bar.update(1)

    return on_fit_epoch_end, bar


def finetune(base_artifact: Path, data: DetectionData, work_dir: Path, params: FinetuneParams, *,
             log_metrics: Callable[[dict[str, float], int], None], base_ref: str = "") -> FinetuneResult:
    from PIL import Image

    from gpu.device import pick_device
    from models.detection.artifact import SAMPLE_FILE, DetectorSpec, prepare_artifact
    from models.detection.checkpoint import write_checkpoint

    prepare_ultralytics()
    from ultralytics import YOLO

    work_dir = Path(work_dir)
    device = pick_device(params.device)
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in data.train[: params.calibration_images]]
    ckpt = write_checkpoint(base_artifact, work_dir / "base.pt", frames)
    model = YOLO(str(ckpt))
    callback, bar = _epoch_logger(log_metrics, params.epochs)
    model.add_callback("on_fit_epoch_end", callback)
    started = time.perf_counter()
    try:
        model.train(data=str(data.for_ultralytics(work_dir / "data")), epochs=params.epochs, imgsz=params.imgsz, batch=params.batch,
                    device="cpu" if device == "cpu" else device.split(":")[-1], workers=params.workers,
                    seed=params.seed, patience=params.patience, project=str(work_dir / "runs"), name="train",
                    exist_ok=True, verbose=False, plots=True, amp=device != "cpu")
    finally:
        bar.close()
    train_s = time.perf_counter() - started
    run_dir = Path(model.trainer.save_dir)
    best = run_dir / "weights" / "best.pt"
    if not best.is_file():
        raise HubError(f"training finished without {best}")
    # A static export: its reshapes are constants, so `prepare_artifact` can cut the head before the
    # decode and free batch, height and width itself. A dynamic=True export computes them at run
    # time, the cut fails and the artifact falls back to a decoded, fixed-square output.
    onnx_path = Path(YOLO(str(best)).export(format="onnx", dynamic=False, simplify=True, imgsz=params.imgsz,
                                            device="cpu"))
    base_spec = DetectorSpec.read(Path(base_artifact))
    artifact = work_dir / "artifact"
    prepare_artifact(onnx_path, artifact, torch_arch=base_spec.torch_arch,
                     sample_image=Path(base_artifact) / SAMPLE_FILE,
                     source=f"hub train see: fine-tune of {base_ref or base_artifact} on {data.yaml_path}")
    return FinetuneResult(artifact, run_dir, device, train_s, int(model.trainer.epoch) + 1)
