"""What the per-capability commands share: run one request in-process, report errors as exit 2."""

from __future__ import annotations

import json
from typing import Any

import typer


def predict_or_exit(capability: str, request: dict, model: str | None = None) -> Any:
    """The champion's (or `model`'s) answer to `request`; a HubError prints `error (status): ...`."""
    from hub.errors import HubError
    from serving.local import predict_local

    try:
        return predict_local(capability, request, model=model)
    except HubError as exc:
        typer.echo(f"error ({exc.status_code}): {exc}", err=True)
        raise typer.Exit(2) from exc


def echo_json(response: Any) -> None:
    """The response exactly as the HTTP API returns it."""
    typer.echo(json.dumps(response.model_dump(mode="json"), ensure_ascii=False, indent=2))
