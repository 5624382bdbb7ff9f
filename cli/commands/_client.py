"""Finding and calling a running hub from the CLI.

`hub serve` records where it listens in `HUB_HOME/run/hub.json` (pid, url); the capability commands
(`hub see`, `hub read`, ...) send their request there when that process is alive, so an answer takes
a round trip instead of loading a model. `--url` (or `HUB_URL`) names a hub explicitly.

    >>> hub = running_hub()                  # RunningHub(url='http://127.0.0.1:8000', pid=4242) or None
    >>> call_hub(hub.url, None, "/v1/reason", json_body={"text": "路灯不亮"}).category
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

# typer reads these options' environment variables itself, like every other flag of the CLI.
URL = typer.Option(None, "--url", envvar="HUB_URL", show_default=False,
                   help="a running hub (default: the one `hub serve` started from this HUB_HOME, else in-process)")
API_KEY = typer.Option(None, "--api-key", envvar="HUB_CLIENT_API_KEY", help="Bearer key when the hub needs one")
LOCAL = typer.Option(False, "--local", help="load the model in this process even when a hub is running")
DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class RunningHub:
    url: str
    pid: int
    log_path: str = ""


def state_path() -> Path:
    from hub.settings import get_settings

    return get_settings().home / "run" / "hub.json"


def write_state(hub: RunningHub) -> None:
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(hub.__dict__))


def clear_state(pid: int) -> None:
    """Remove the state file if it still describes process `pid` (a newer hub may have replaced it)."""
    path = state_path()
    hub = _read_state(path)
    if hub is not None and hub.pid == pid:
        path.unlink(missing_ok=True)


def _read_state(path: Path) -> RunningHub | None:
    try:
        return RunningHub(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_hub() -> RunningHub | None:
    """The hub `hub serve` started from this HUB_HOME, if its process is still alive."""
    hub = _read_state(state_path())
    return hub if hub is not None and pid_alive(hub.pid) else None


class Reply(dict):
    """A JSON answer with attribute access, so commands print remote and in-process answers alike."""

    def __getattr__(self, key: str) -> Any:
        try:
            return _wrap(self[key])
        except KeyError:
            raise AttributeError(key) from None

    def items(self):  # type: ignore[override]
        return [(k, _wrap(v)) for k, v in super().items()]

    def model_dump(self, mode: str = "json") -> dict:
        return dict(self)


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return Reply(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class HubUnreachable(Exception):
    """No HTTP answer at all (connection refused, reset, DNS): the caller may fall back."""


def call_hub(url: str, api_key: str | None, path: str, *, json_body: dict, timeout_s: float = 600.0) -> Reply:
    """POST `json_body` to `url/path`; an HTTP error prints `error (status): message` and exits 2.

    The standard library's client, not httpx: importing httpx (and the rich console it pulls in)
    costs a large part of the one second a command may take against a running hub."""
    import urllib.error
    import urllib.request

    headers = {"content-type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    request = urllib.request.Request(url.rstrip("/") + path, data=json.dumps(json_body).encode(), headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:  # noqa: S310 (the user's hub URL)
            status, raw = reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionError | OSError) and not isinstance(exc.reason, TimeoutError):
            raise HubUnreachable(f"{url}: {exc.reason}") from exc
        typer.echo(f"error: the hub at {url} did not answer: {exc.reason}", err=True)
        raise typer.Exit(2) from exc
    except (TimeoutError, ConnectionError) as exc:
        typer.echo(f"error: the hub at {url} did not answer: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        body = json.loads(raw)
    except ValueError:
        body = {"error": {"message": raw[:500].decode(errors="replace")}}
    if status >= 400:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        typer.echo(f"error ({status}): {error.get('message', raw[:500].decode(errors='replace'))}", err=True)
        raise typer.Exit(2)
    return _wrap(body)
