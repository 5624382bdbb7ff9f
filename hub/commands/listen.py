"""`hub listen AUDIO`: transcribe an audio file with the `listen` champion, in this process."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def listen(
        audio: Path = typer.Argument(..., exists=True, dir_okay=False, help="WAV/FLAC/MP3/OGG/M4A file"),
        language: str = typer.Option(None, help="ISO 639-1 code (en, zh); default: detect / the model's"),
        as_json: bool = typer.Option(False, "--json", help="print the whole response (segments, model)"),
        model: str = typer.Option(None, help="models:/<name>@<alias> or /<version> (default: the champion)"),
    ) -> None:
        """Print the transcript of AUDIO."""
        from hub.errors import HubError
        from serving.local import predict_local

        try:
            response = predict_local("listen", {"audio": audio.read_bytes(), "language": language}, model=model)
        except HubError as exc:
            typer.echo(f"error ({exc.status_code}): {exc}", err=True)
            raise typer.Exit(2) from exc
        if as_json:
            typer.echo(json.dumps(response.model_dump(mode="json"), ensure_ascii=False, indent=2))
        else:
            typer.echo(response.text)
