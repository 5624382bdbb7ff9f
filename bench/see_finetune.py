"""Benchmark of `hub train see`: COCO champion vs fine-tune on the same validation scene.

Runs in a fresh HUB_HOME (its own SQLite MLflow): registers the shipped COCO YOLOv8n as
`yolov8n-coco` v1, scores it on the dataset's val split, fine-tunes from it with `run_pipeline`
(the code behind `hub train see`), and prints a Markdown table for docs/benchmarks.md with the
training time per epoch. Heavy: run under `flock /tmp/hub-heavy.lock`.

    python bench/see_finetune.py --data ../shared/data/detection/overhead-cars/data.yaml --epochs 50
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--home", type=Path, default=None, help="HUB_HOME to use (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="see-bench-"))
    os.environ["HUB_HOME"] = str(home)
    from hub.settings import apply_runtime_env, reset_settings

    reset_settings()
    settings = apply_runtime_env()
    from models.detection import prepare_default
    from registry.store import MlflowStore
    from training.see.data import DetectionData
    from training.see.evaluate import evaluate_artifact
    from training.see.finetune import FinetuneParams
    from training.see.pipeline import run_pipeline

    store = MlflowStore.from_settings(settings)
    coco_dir = home / "coco-artifact"
    prepare_default(settings.shared_dir, coco_dir)
    if store.alias_version("yolov8n-coco", "champion") is None:
        store.set_alias("yolov8n-coco", "champion", store.register("yolov8n-coco", coco_dir, metadata={
            "capability": "see", "format": "yolo-onnx"}), reason="benchmark baseline")
    data = DetectionData.read(args.data)
    started = time.perf_counter()
    coco = evaluate_artifact(coco_dir, data)
    coco_eval_s = time.perf_counter() - started
    params = FinetuneParams(epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, device=args.device)
    outcome = run_pipeline(args.data, name="overhead-cars-bench", params=params,
                           base="models:/yolov8n-coco@champion", echo=print)
    import mlflow

    run = mlflow.MlflowClient(settings.tracking_uri).get_run(outcome.run_id)
    train_s, epochs_run = run.data.metrics["train_s"], int(run.data.metrics["epochs_run"])
    tuned = outcome.challenger
    rows = [("COCO YOLOv8n (champion, `car`)", coco), (f"fine-tune, {epochs_run} epochs at {args.imgsz}", tuned)]
    print(f"\n{len(data.train)} train / {len(data.val)} val images ({tuned.boxes} val boxes); "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, device {params.device}")
    print("| model | mAP50 | mAP50-95 | precision | recall |\n|---|---|---|---|---|")
    for label, s in rows:
        print(f"| {label} | {s.map50:.3f} | {s.map50_95:.3f} | {s.precision:.3f} | {s.recall:.3f} |")
    print(f"\ntraining {train_s:.0f} s = {train_s / max(epochs_run, 1):.1f} s/epoch; COCO val scoring {coco_eval_s:.1f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "coco": coco.as_dict(), "finetune": tuned.as_dict(), "train_s": train_s, "epochs": epochs_run,
            "imgsz": args.imgsz, "batch": args.batch, "device": params.device}, indent=2))


if __name__ == "__main__":
    main()
