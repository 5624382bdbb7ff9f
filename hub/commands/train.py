"""`hub train <task>`: training pipelines that log to MLflow and register gated versions.

    hub train reason --data ../shared/data/text/gov_messages_labelled.csv
    hub train reason --data titles.txt --candidates tfidf,char-bert --max-rows 4000 --no-promote
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    from hub.commands.reason import group

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

        from hub.commands._output import Steps, quiet
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
