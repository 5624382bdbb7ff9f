"""What the per-capability commands share: send one request to a running hub when there is one, else
run it in this process with the registry's champion; report errors as `error (status): ...`, exit 2."""

from __future__ import annotations

import base64
import json
from typing import Any

import typer

from cli.commands._client import HubUnreachable, call_hub, running_hub


def _note(text: str) -> None:
    typer.echo(text, err=True)


def _wire(request: dict) -> dict:
    """The request as JSON: bytes as base64 (what the HTTP API takes), unset fields left out."""
    return {k: base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v
            for k, v in request.items() if v is not None}


def answer_or_exit(capability: str, request: dict, *, model: str | None = None, url: str | None = None,
                   api_key: str | None = None, local: bool = False, path: str | None = None) -> Any:
    """The answer of a running hub (`url`, or the one `hub serve` started), else of an in-process model.

    `model` pins a registered version, which only the in-process path can do: the hub serves the
    versions its configuration names."""
    target = url
    if not local and model is None and target is None:
        hub = running_hub()
        target = hub.url if hub else None
    if target and not local and model is None:
        try:
            return call_hub(target, api_key, path or f"/v1/{capability}", json_body=_wire(request))
        except HubUnreachable as exc:
            if url:  # the user named this hub: do not silently answer from somewhere else
                typer.echo(f"error: cannot reach the hub at {exc}", err=True)
                raise typer.Exit(2) from exc
            _note(f"the hub at {target} does not answer ({exc}); loading {capability} in this process")
    elif model is not None and not local:
        _note(f"--model {model}: loading it in this process (a running hub serves its configured versions)")
    elif not local:
        _note(f"no running hub (start one with `hub serve --detach`); loading {capability} in this process")
    return predict_or_exit(capability, request, model)


def predict_or_exit(capability: str, request: dict, model: str | None = None) -> Any:
    """The champion's (or `model`'s) answer to `request` in this process."""
    from cli.commands._output import quiet
    from hub.errors import HubError
    from serving.local import predict_local

    quiet()  # Ray and MLflow set their loggers to INFO when imported
    try:
        return predict_local(capability, request, model=model)
    except HubError as exc:
        typer.echo(f"error ({exc.status_code}): {exc}", err=True)
        raise typer.Exit(2) from exc


def echo_json(response: Any) -> None:
    """The response exactly as the HTTP API returns it."""
    typer.echo(json.dumps(response.model_dump(mode="json"), ensure_ascii=False, indent=2))
