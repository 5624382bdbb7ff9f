"""`hub speak "TEXT" -o out.wav`: synthesise speech with the `speak` champion (a running hub, or in this process)."""

from __future__ import annotations

import base64
from pathlib import Path

import typer

from cli.commands._client import API_KEY, LOCAL, URL

_FORMATS = {".wav": "wav", ".mp3": "mp3", ".ogg": "ogg", ".opus": "ogg"}


def register(app: typer.Typer) -> None:
    @app.command()
    def speak(
        text: str = typer.Argument(..., help="Chinese or English text"),
        output: Path = typer.Option(Path("speech.wav"), "-o", "--output", help="file to write (.wav/.mp3/.ogg)"),
        voice: str = typer.Option(None, help="espeak-ng voice, e.g. cmn-latn-pinyin, en-us, en-gb+f3"),
        speed: float = typer.Option(1.0, min=0.5, max=2.0),
        sample_rate_hz: int = typer.Option(None, help="resample, e.g. 8000 for a phone line"),
        url: str = URL,
        api_key: str = API_KEY,
        local: bool = LOCAL,
    ) -> None:
        """Write TEXT as speech to OUTPUT (the format follows the file extension)."""
        from cli.commands._local import answer_or_exit

        fmt = _FORMATS.get(output.suffix.lower())
        if fmt is None:
            typer.echo(f"error: unknown extension {output.suffix!r}; use .wav, .mp3 or .ogg", err=True)
            raise typer.Exit(2)
        request = {"text": text, "voice": voice, "speed": speed, "format": fmt, "sample_rate_hz": sample_rate_hz}
        response = answer_or_exit("speak", request, url=url, api_key=api_key, local=local)
        audio = response.audio  # bytes in-process, base64 text from the HTTP API
        output.write_bytes(base64.b64decode(audio) if isinstance(audio, str) else audio)
        typer.echo(f"{output}: {response.duration_s:.2f} s at {response.sample_rate_hz} Hz, voice {response.voice}")
