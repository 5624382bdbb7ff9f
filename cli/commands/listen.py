"""`hub listen AUDIO`: transcribe an audio file with the `listen` champion: a running hub's, or in this process."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.commands._client import API_KEY, LOCAL, URL


def register(app: typer.Typer) -> None:
    @app.command()
    def listen(
        audio: Path = typer.Argument(..., exists=True, dir_okay=False, help="WAV/FLAC/MP3/OGG/M4A file"),
        language: str = typer.Option(None, help="ISO 639-1 code (en, zh); default: detect / the model's"),
        as_json: bool = typer.Option(False, "--json", help="print the whole response (segments, model)"),
        model: str = typer.Option(None, help="models:/<name>@<alias> or /<version> (default: the champion)"),
        url: str = URL,
        api_key: str = API_KEY,
        local: bool = LOCAL,
    ) -> None:
        """Print the transcript of AUDIO."""
        from cli.commands._local import answer_or_exit, echo_json

        request = {"audio": audio.read_bytes(), "language": language}
        response = answer_or_exit("listen", request, model=model, url=url, api_key=api_key, local=local)
        if as_json:
            echo_json(response)
        else:
            typer.echo(response.text)
