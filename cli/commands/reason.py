"""`hub reason "TEXT"`: classify and route a hotline text with the `reason` champion: a running hub's, or in this process.
`hub eval reason --data CSV`: score the champion on a labelled CSV (last lines: accuracy, macro_f1).

    hub reason "小区门口的路灯坏了两个星期，请尽快维修"
    hub eval reason --data ../shared/data/text/gov_messages_labelled.csv --text-col text --label-col category
"""

from __future__ import annotations

from pathlib import Path

import typer

from cli.commands._client import API_KEY, LOCAL, URL

DEFAULT_REF = "models:/hotline-classifier@champion"


def group(app: typer.Typer, name: str, help_text: str) -> typer.Typer:
    """The sub-app `name` of `app`, created on first use (`eval` and `train` collect several tasks)."""
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    sub = typer.Typer(help=help_text, no_args_is_help=True)
    app.add_typer(sub, name=name)
    return sub


def _fail(exc: Exception) -> None:
    status = getattr(exc, "status_code", 2)
    typer.echo(f"error ({status}): {exc}", err=True)
    raise typer.Exit(2) from exc


def register(app: typer.Typer) -> None:
    @app.command()
    def reason(
        text: str = typer.Argument(..., help="the citizen's request, any length"),
        subject: str = typer.Option("", help="the request's subject line, if it has one (web form title)"),
        top_k: int = typer.Option(None, min=1, max=20, help="categories to show (default: configs/reason.yaml)"),
        cases_k: int = typer.Option(None, min=0, max=20, help="similar cases to show"),
        as_json: bool = typer.Option(False, "--json", help="print the whole response"),
        model: str = typer.Option(None, help="models:/<name>@<alias> or /<version> (default: the champion)"),
        url: str = URL,
        api_key: str = API_KEY,
        local: bool = LOCAL,
    ) -> None:
        """Category, department, review flag and similar past cases of TEXT."""
        from cli.commands._local import answer_or_exit, echo_json

        request = {"text": text, "subject": subject, "top_k": top_k, "cases_k": cases_k}
        r = answer_or_exit("reason", request, model=model, url=url, api_key=api_key, local=local)
        if as_json:
            echo_json(r)
            return
        review = f"yes ({', '.join(r.review_reasons)})" if r.needs_review else "no"
        typer.echo(f"category:     {r.category} ({r.confidence:.3f})")
        typer.echo(f"department:   {r.department}")
        typer.echo(f"needs review: {review}" + ("   [text truncated]" if r.truncated else ""))
        typer.echo(f"read:         {' + '.join(r.inputs)}")
        typer.echo("top categories: " + ", ".join(f"{c.category} {c.probability:.3f}" for c in r.top_categories))
        for case in r.similar_cases:
            typer.echo(f"  case {case.id} ({case.score:.3f}, {case.source}): {case.subject}")
            if case.reply_excerpt:
                typer.echo(f"      reply: {case.reply_excerpt}")
        if r.model:
            typer.echo(f"model: {r.model.name} v{r.model.version}" + (f" @{r.model.alias}" if r.model.alias else ""))

    evaluate = group(app, "eval", "Evaluate registered models on labelled data.")

    @evaluate.command("reason")
    def eval_reason(
        data: Path = typer.Option(..., "--data", exists=True, dir_okay=False, help="labelled CSV"),
        text_col: str = typer.Option("text", help="column with the message text"),
        label_col: str = typer.Option("category", help="column with the true category"),
        subject_col: str = typer.Option("subject", help="column with the subject line: rows with one are answered "
                                        "by the subject-aware head when the model has one; '' to read text only"),
        model: str = typer.Option(DEFAULT_REF, help="models:/<name>@<alias> or /<version>"),
    ) -> None:
        """Accuracy and macro-F1 of a `reason` model version on DATA (default: the champion)."""
        from cli.commands._output import quiet
        from hub.errors import HubError
        from hub.settings import get_settings
        from registry.store import MlflowStore
        from training.data import load_labelled
        from training.gate import evaluate_artifact

        quiet()
        try:
            if model == DEFAULT_REF:
                from serving.defaults import ensure_defaults

                ensure_defaults(["reason"])  # a fresh hub: bootstrap the default first
            rows = load_labelled(data, text_col, label_col, subject_col=subject_col)
            resolved = MlflowStore.from_settings().resolve(model)
            cache_dir = get_settings().cache_dir / "e5"
            score = evaluate_artifact(resolved.artifact_dir, rows.texts, rows.labels, cache_dir=cache_dir,
                                      progress=True, subjects=rows.subjects if rows.has_subjects else None)
            text_only = (evaluate_artifact(resolved.artifact_dir, rows.texts, rows.labels, cache_dir=cache_dir)
                         if score.subject_rows else None)
        except HubError as exc:
            _fail(exc)
        typer.echo(f"model: {resolved.name} v{resolved.version}" + (f" @{resolved.alias}" if resolved.alias else ""))
        typer.echo(f"rows: {score.n}")
        if text_only is not None:  # what the same rows score without their subjects (hotline calls have none)
            typer.echo(f"text only: accuracy {text_only.accuracy:.3f} macro_f1 {text_only.macro_f1:.3f}")
        typer.echo(f"inputs: {score.inputs}")
        typer.echo(f"accuracy: {score.accuracy:.3f}")
        typer.echo(f"macro_f1: {score.macro_f1:.3f}")
