"""`hub hotline AUDIO`: run a recorded call through listen -> reason -> reply -> speak, in this process."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def hotline(
        audio: Path = typer.Argument(..., exists=True, dir_okay=False, help="the recorded call"),
        language: str = typer.Option(None, help="language of the call (en, zh); default: detect"),
        reply_audio: Path = typer.Option(None, "--reply-audio", help="also write the spoken reply here (.wav)"),
        config: Path = typer.Option(None, help="reply templates (default: configs/hotline.yaml)"),
    ) -> None:
        """Print the pipeline's JSON (the reply audio as base64, or written to --reply-audio)."""
        import asyncio

        from hub.errors import HubError
        from pipelines.hotline import HotlineCallRequest, HotlineConfig, handle_call, local_stages

        try:
            request = HotlineCallRequest(audio=audio.read_bytes(), language=language)
            response = asyncio.run(handle_call(request, local_stages(), HotlineConfig.load(config)))
        except HubError as exc:
            typer.echo(f"error ({exc.status_code}): {exc}", err=True)
            raise typer.Exit(2) from exc
        body = response.model_dump(mode="json")
        if reply_audio is not None:
            reply_audio.write_bytes(response.reply_audio)
            body["reply_audio"] = str(reply_audio)
        typer.echo(json.dumps(body, ensure_ascii=False, indent=2))
