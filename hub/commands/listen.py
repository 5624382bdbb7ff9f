"""`hub listen AUDIO`: transcribe an audio file with the `listen` champion, in this process."""

from __future__ import annotations

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
        from hub.commands._local import echo_json, predict_or_exit

        response = predict_or_exit("listen", {"audio": audio.read_bytes(), "language": language}, model)
        if as_json:
            echo_json(response)
        else:
            typer.echo(response.text)
