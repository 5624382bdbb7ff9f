"""`hub train <task>`: training pipelines that log to MLflow and register gated versions.

    hub train reason --data ../shared/data/text/gov_messages_labelled.csv
    hub train reason --data titles.txt --candidates tfidf,char-bert --max-rows 4000 --no-promote
    hub train see --data ../shared/data/detection/overhead-cars/data.yaml --model overhead-cars --epochs 50
    hub eval see --data data.yaml --model models:/overhead-cars@champion
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    from cli.commands.reason import group

    train = group(app, "train", "Train models, log runs to MLflow, register gated versions.")

    @train.command("reason")
    def train_reason(
        data: Path = typer.Option(..., "--data", exists=True, dir_okay=False,
                                  help="labelled CSV (or THUCNews-style title<TAB>label .txt)"),
        text_col: str = typer.Option("text", help="column with the message text"),
        label_col: str = typer.Option("category", help="column with the category"),
        candidates: str = typer.Option("tfidf,e5-linear,hybrid,char-bert", help="comma-separated candidates"),
        name: str = typer.Option("hotline-classifier", help="registered model name"),
        cases: Path = typer.Option(None, exists=True, dir_okay=False,
                                   help="CSV of past cases with replies (default: ../shared gov_messages_with_replies)"),
        model_card: Path = typer.Option(None, help="also write the model card here, e.g. docs/reason-model-card.md"),
        promote: bool = typer.Option(True, "--promote/--no-promote", help="move @champion when the gate passes"),
        min_delta: float = typer.Option(0.0, help="the challenger must beat the champion by more than this"),
        folds: int = typer.Option(5, min=2, max=20),
        seed: int = typer.Option(0),
        max_rows: int = typer.Option(None, min=20, help="train on a fixed random sample of this many rows"),
        bert_epochs: int = typer.Option(None, min=1, help="char-bert epochs (default 12)"),
    ) -> None:
        """Train the `reason` candidates on DATA, register the best, gate it against the champion."""
        from dataclasses import replace

        from cli.commands._output import Steps, quiet
        from hub.errors import HubError
        from training.candidates import BertParams
        from training.textcls import TrainConfig, run_pipeline

        quiet()

        names = tuple(c.strip() for c in candidates.split(",") if c.strip())
        bert = BertParams() if bert_epochs is None else replace(BertParams(), epochs=bert_epochs)
        config = TrainConfig(candidates=names, folds=folds, seed=seed, bert=bert)
        try:
            outcome = run_pipeline(data, text_col=text_col, label_col=label_col, name=name, config=config,
                                   cases_path=cases, model_card_path=model_card, promote=promote,
                                   min_delta=min_delta, max_rows=max_rows, echo=Steps())
        except HubError as exc:
            typer.echo(f"error ({exc.status_code}): {exc}", err=True)
            raise typer.Exit(2) from exc
        alias = "champion" if outcome.promoted else "challenger"
        typer.echo(f"registered: models:/{name}/{outcome.version} (@{alias}); MLflow run {outcome.run_id}")

    _register_see(app, train)


def _register_see(app: typer.Typer, train: typer.Typer) -> None:
    from cli.commands.reason import group

    evaluate = group(app, "eval", "Score registered models on labelled data.")

    @train.command("see")
    def train_see(
        data: Path = typer.Option(..., "--data", exists=True, dir_okay=False, help="Ultralytics dataset YAML"),
        model: str = typer.Option(..., "--model", help="registered model name of the result, e.g. overhead-cars"),
        epochs: int = typer.Option(50, min=1),
        imgsz: int = typer.Option(640, min=32, help="training image size (a multiple of 32)"),
        batch: int = typer.Option(16, min=1),
        device: str = typer.Option("auto", help="auto (GPU when present), cpu or cuda[:n]"),
        base: str = typer.Option(None, help="start from this reference (default: the champion of --model, "
                                             "else of yolov8n-coco)"),
        promote: bool = typer.Option(True, "--promote/--no-promote", help="move @champion when the gate passes"),
        seed: int = typer.Option(0),
    ) -> None:
        """Fine-tune a detector on DATA, register it as a new version of MODEL, gate it on mAP50-95."""
        from hub.errors import HubError
        from training.see.finetune import FinetuneParams
        from training.see.pipeline import run_pipeline

        params = FinetuneParams(epochs=epochs, imgsz=imgsz, batch=batch, device=device, seed=seed)
        try:
            outcome = run_pipeline(data, name=model, params=params, base=base, promote=promote, echo=typer.echo)
        except HubError as exc:
            typer.echo(f"error ({exc.status_code}): {exc}", err=True)
            raise typer.Exit(2) from exc
        alias = "champion" if outcome.promoted else "challenger"
        typer.echo(f"registered: models:/{model}/{outcome.version} (@{alias}); MLflow run {outcome.run_id}")

    @evaluate.command("see")
    def eval_see(
        data: Path = typer.Option(..., "--data", exists=True, dir_okay=False, help="Ultralytics dataset YAML"),
        model: str = typer.Option("models:/yolov8n-coco@champion", "--model",
                                  help="model reference, e.g. models:/overhead-cars/2 or models:/overhead-cars@champion"),
    ) -> None:
        """Print mAP50, mAP50-95, precision and recall of MODEL on DATA's val split."""
        from hub.errors import HubError
        from training.see.pipeline import evaluate_ref

        try:
            evaluate_ref(data, model, echo=typer.echo)
        except HubError as exc:
            typer.echo(f"error ({exc.status_code}): {exc}", err=True)
            raise typer.Exit(2) from exc
