"""`hub hotline AUDIO`: run a recorded call through listen -> reason -> reply -> speak, on a running
hub (`POST /v1/hotline/call`) or in this process."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import typer

from cli.commands._client import API_KEY, LOCAL, URL, HubUnreachable, call_hub, running_hub


def register(app: typer.Typer) -> None:
    @app.command()
    def hotline(
        audio: Path = typer.Argument(..., exists=True, dir_okay=False, help="the recorded call"),
        language: str = typer.Option(None, help="language of the call (en, zh); default: detect"),
        reply_audio: Path = typer.Option(None, "--reply-audio", help="also write the spoken reply here (.wav)"),
        config: Path = typer.Option(None, help="reply templates, in-process only (default: configs/hotline.yaml)"),
        url: str = URL,
        api_key: str = API_KEY,
        local: bool = LOCAL,
    ) -> None:
        """Print the pipeline's JSON (the reply audio as base64, or written to --reply-audio)."""
        target = None if local or config else (url or getattr(running_hub(), "url", None))
        body = None
        if target:
            request = {"audio": base64.b64encode(audio.read_bytes()).decode("ascii"), "language": language}
            try:
                body = dict(call_hub(target, api_key, "/v1/hotline/call",
                                     json_body={k: v for k, v in request.items() if v is not None}))
            except HubUnreachable as exc:
                if url:
                    typer.echo(f"error: cannot reach the hub at {exc}", err=True)
                    raise typer.Exit(2) from exc
                typer.echo(f"the hub at {target} does not answer ({exc}); running the call in this process",
                           err=True)
        if body is None:
            body = _in_process(audio, language, config)
        if reply_audio is not None:
            encoded = body.get("reply_audio")
            reply_audio.write_bytes(base64.b64decode(encoded) if isinstance(encoded, str) else encoded or b"")
            body["reply_audio"] = str(reply_audio)
        typer.echo(json.dumps(body, ensure_ascii=False, indent=2))


def _in_process(audio: Path, language: str | None, config: Path | None) -> dict:
    import asyncio

    from hub.errors import HubError
    from pipelines.hotline import HotlineCallRequest, HotlineConfig, handle_call, local_stages
    from serving.local import predict_local

    try:
        request = HotlineCallRequest(audio=audio.read_bytes(), language=language)
        response = asyncio.run(handle_call(request, local_stages(predict_local), HotlineConfig.load(config)))
    except HubError as exc:
        typer.echo(f"error ({exc.status_code}): {exc}", err=True)
        raise typer.Exit(2) from exc
    return response.model_dump(mode="json")
