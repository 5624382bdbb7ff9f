"""`hub train see` and `hub eval see`: fine-tune, log one MLflow run, register, gate.

    outcome = run_pipeline(Path("data.yaml"), name="overhead-cars", params=FinetuneParams(epochs=50))
    outcome.promoted, outcome.challenger.map50_95, outcome.champion.map50_95

The base weights are the champion of `--model` when it has one, else the champion of the default
`see` model (COCO YOLOv8n). The new version gets alias `challenger`; `champion` moves to it only when
its mAP50-95 on the dataset's val split is STRICTLY higher than the champion's on the same split (the
first version of a name has no champion and becomes it). Both numbers are printed and logged.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from training.gate import GateDecision, decide
from training.see.data import DetectionData
from training.see.evaluate import DetScore, evaluate_artifact
from training.see.finetune import FinetuneParams, finetune
from training.see.report import CardFacts, model_card, prediction_grid
from training.tracking import experiment_id

EXPERIMENT = "see-training"
GATE_METRIC = "map50_95"
DEFAULT_BASE_MODEL = "yolov8n-coco"  # models.catalogue's default `see` model
RUN_PLOTS = ("results.csv", "results.png", "confusion_matrix.png", "confusion_matrix_normalized.png",
             "BoxPR_curve.png", "BoxF1_curve.png", "val_batch0_pred.jpg", "val_batch0_labels.jpg")


@dataclass(frozen=True)
class SeeOutcome:
    name: str
    version: str
    run_id: str
    promoted: bool
    challenger: DetScore
    champion: DetScore | None
    decision: GateDecision


def base_reference(store, name: str, base: str | None) -> str:
    if base:
        return base
    if store.alias_version(name, "champion") is not None:
        return f"models:/{name}@champion"
    return f"models:/{DEFAULT_BASE_MODEL}@champion"


def evaluate_ref(data_path: Path, ref: str, *, echo=print) -> DetScore:
    """`hub eval see`: score any registered version on the dataset's val split."""
    from hub.settings import apply_runtime_env
    from registry.store import MlflowStore

    store = MlflowStore.from_settings(apply_runtime_env())
    data = DetectionData.read(data_path)
    resolved = store.resolve(ref)
    score = evaluate_artifact(resolved.artifact_dir, data, progress=True)
    echo(f"{resolved.name} v{resolved.version} on {data.yaml_path.name} val: {score.line()}")
    for cls, values in score.per_class.items():
        echo(f"  {cls}: " + "  ".join(f"{k} {v:.4f}" for k, v in values.items()))
    return score


def run_pipeline(data_path: Path, *, name: str, params: FinetuneParams = FinetuneParams(), base: str | None = None,
                 promote: bool = True, echo=print) -> SeeOutcome:
    import mlflow

    from hub.settings import apply_runtime_env
    from registry.store import MlflowStore

    settings = apply_runtime_env()
    store = MlflowStore.from_settings(settings)
    data = DetectionData.read(data_path)
    base_ref = base_reference(store, name, base)
    base_model = store.resolve(base_ref)
    echo(f"data: {data.yaml_path} ({len(data.train)} train / {len(data.val)} val images, classes {list(data.names)}); "
         f"base: {base_ref} (version {base_model.version}); MLflow: {settings.tracking_uri}")
    with tempfile.TemporaryDirectory(prefix="see-train-") as tmp, \
            mlflow.start_run(experiment_id=experiment_id(settings, EXPERIMENT), run_name=f"train-see-{name}") as run:
        work = Path(tmp)
        fingerprint = data.fingerprint()
        mlflow.log_params({**params.as_dict(), "data": str(data.yaml_path), "val_sha256": fingerprint,
                           "train_images": len(data.train), "val_images": len(data.val),
                           "classes": ",".join(data.names), "base": f"{base_model.name}/{base_model.version}",
                           "registered_model": name})
        result = finetune(base_model.artifact_dir, data, work, params, base_ref=base_ref,
                          log_metrics=lambda m, step: mlflow.log_metrics(m, step=step))
        echo(f"trained {result.epochs_run} epoch(s) on {result.device} in {result.train_s:.1f} s "
             f"({result.train_s / max(result.epochs_run, 1):.1f} s/epoch)")
        challenger = evaluate_artifact(result.artifact_dir, data, plot_dir=work / "served-eval")
        champion_version = store.alias_version(name, "champion")
        champion = None
        if champion_version is not None:
            champion = evaluate_artifact(store.resolve(f"models:/{name}/{champion_version}").artifact_dir, data)
        decision = decide(challenger, champion, champion_version, metric=GATE_METRIC)
        _log_run(mlflow, result, work, challenger, champion, data.names)
        version = store.register(name, result.artifact_dir, run_id=run.info.run_id,
                                 metadata={"capability": "see", "format": "yolo-onnx", "base": base_ref,
                                           "val_map50": f"{challenger.map50:.4f}",
                                           "val_map50_95": f"{challenger.map50_95:.4f}", "val_sha256": fingerprint})
        store.set_alias(name, "challenger", version, reason=f"hub train see on {data.yaml_path.name}")
        promoted = bool(promote and decision.promote)
        if promoted:
            store.set_alias(name, "champion", version, reason=f"gate: {decision.reason}")
        card = model_card(CardFacts(
            name, version, base_ref, str(data.yaml_path), fingerprint, data.names, len(data.train), len(data.val),
            params.as_dict(), result.device, result.train_s, result.epochs_run, challenger, champion,
            champion_version, decision.reason + ("" if promoted or not decision.promote else " (--no-promote)")))
        (work / "model_card.md").write_text(card, encoding="utf-8")
        mlflow.log_artifact(str(work / "model_card.md"), "report")
        mlflow.set_tags({"hub.registered_model": name, "hub.version": version, "hub.gate.promoted": str(promoted),
                         "hub.gate.reason": decision.reason[:4900]})
        echo(f"challenger v{version}: {challenger.line()}")
        if champion is not None:
            echo(f"champion   v{champion_version}: {champion.line()}")
        echo(f"gate ({GATE_METRIC}): {decision.reason}")
        return SeeOutcome(name, version, run.info.run_id, promoted, challenger, champion, decision)


def _log_run(mlflow, result, work: Path, challenger: DetScore, champion: DetScore | None,
             names: tuple[str, ...]) -> None:
    mlflow.log_metrics({**challenger.as_dict("val_"), "train_s": result.train_s, "epochs_run": result.epochs_run,
                        **(champion.as_dict("champion_val_") if champion is not None else {})})
    for name in RUN_PLOTS:
        if (result.run_dir / name).is_file():
            mlflow.log_artifact(str(result.run_dir / name), "ultralytics")
    served = work / "served-eval"
    for png in sorted(served.glob("*.png")) if served.is_dir() else []:
        mlflow.log_artifact(str(png), "served-eval")
    grid = prediction_grid(challenger.results, names, work / "val_predictions.jpg")
    mlflow.log_artifact(str(grid), "report")
    mlflow.log_artifact(str(result.artifact_dir / "hub.json"), "report")

