"""`hub serve [--detach]`, `hub stop`, `hub logs` and `hub keys`.

`hub serve` prints each start-up step with its time and the URL once the hub answers; it records
itself in `HUB_HOME/run/hub.json` so that `hub see` & co. call it and `hub stop` finds it. Its log
(the hub's own lines and Ray's start-up lines) is `HUB_HOME/logs/serve.log`; each replica's log is
in Ray's session folder (`/tmp/ray/session_latest/logs/serve/`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import typer

from cli.commands._client import RunningHub, clear_state, pid_alive, running_hub, state_path, write_state
from cli.commands._output import Steps, quiet, verbose

STEP_LOGGER = "hub.serve"
READY_TIMEOUT_S = 900.0


def log_path() -> Path:
    from hub.settings import get_settings

    return get_settings().home / "logs" / "serve.log"


def _log_to_file(path: Path) -> None:
    """Every log record of this process (ours, Ray's, MLflow's) also goes to `path`."""
    import logging

    path.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger().setLevel(logging.INFO)  # the console handlers stay at WARNING (quiet())
    # One handler each: ray.init re-formats every handler of the "ray" logger with Ray's format,
    # and the step lines must keep theirs (a detached `hub serve` finds them by it).
    for name in ("", "ray", "ray.serve", "mlflow"):  # these three do not propagate to the root
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        logging.getLogger(name).addHandler(handler)


def _serve_foreground(config: Path | None, host: str | None, port: int | None, address: str | None,
                      bootstrap: bool) -> None:
    import logging

    from hub.settings import get_settings

    settings = get_settings()
    log_file = log_path()
    _log_to_file(log_file)
    # quiet() again at every step: Ray and Serve add console handlers as they start
    step = Steps(logging.getLogger(STEP_LOGGER), before=quiet)
    step(f"HUB_HOME {settings.home}; log {log_file}")
    step("loading Ray Serve and MLflow")
    import ray.serve  # noqa: F401  (imported here so that quiet() finds its console handlers)

    from hub.errors import HubError
    from serving.launch import start, stop

    signal.signal(signal.SIGTERM, _interrupt)  # `hub stop` during start-up: shut Ray down, too
    try:
        cfg = start(config or settings.config, host=host, port=port, address=address, bootstrap=bootstrap, step=step)
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        logging.getLogger(STEP_LOGGER).error("start failed: %s", exc)
        _stop_if_started(stop)
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:
        typer.echo("interrupted during start-up; shutting down")
        _stop_if_started(stop)
        raise typer.Exit(130) from None
    quiet()
    shown_host = "127.0.0.1" if cfg.http.host in ("0.0.0.0", "::") else cfg.http.host
    url = f"http://{shown_host}:{cfg.http.port}"
    write_state(RunningHub(url=url, pid=os.getpid(), log_path=str(log_file)))
    step(f"hub ready in {step.elapsed_s():.1f} s on {url} "
         f"(capabilities: {', '.join(sorted(cfg.capabilities))}; MLflow: {settings.tracking_uri})")
    typer.echo(f"try: curl {url}/readyz  ·  hub see IMAGE  ·  docs {url}/docs  ·  stop: Ctrl-C or `hub stop`")
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    typer.echo("shutting down")
    try:
        stop()
    finally:
        clear_state(os.getpid())


def _stop_if_started(stop) -> None:
    import ray

    if ray.is_initialized():
        stop()


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def _serve_detached(argv: list[str]) -> None:
    """Start `hub serve` in its own session, show its steps until it is ready, and return."""
    log_file = log_path()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    out_file = log_file.with_name("serve.out")  # the child's own stdout/stderr (tracebacks)
    offset = log_file.stat().st_size if log_file.exists() else 0
    with open(out_file, "ab") as out:
        child = subprocess.Popen([sys.executable, "-m", "cli.main", *argv], stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    typer.echo(f"hub serve started in the background (pid {child.pid}); log {log_file}")
    deadline = time.monotonic() + READY_TIMEOUT_S
    marker = f" {STEP_LOGGER}: "
    while True:
        steps, offset = new_steps(log_file, offset, marker)
        for line in steps:
            typer.echo(line)
        hub = running_hub()
        if hub is not None and hub.pid == child.pid:
            time.sleep(0.2)  # the steps logged just before the state file was written
            for line in new_steps(log_file, offset, marker)[0]:
                typer.echo(line)
            typer.echo(f"ready: {hub.url}   (logs: `hub logs -f`, stop: `hub stop`)")
            return
        if child.poll() is not None:
            typer.echo(f"error: hub serve exited with status {child.returncode}; last lines of {out_file}:", err=True)
            typer.echo("\n".join(out_file.read_text(errors="replace").splitlines()[-20:]), err=True)
            raise typer.Exit(2)
        if time.monotonic() > deadline:
            typer.echo(f"error: not ready after {READY_TIMEOUT_S:.0f} s; it keeps starting, see `hub logs`", err=True)
            raise typer.Exit(2)
        time.sleep(0.5)


def new_steps(log_file: Path, offset: int, marker: str) -> tuple[list[str], int]:
    """The step lines written to `log_file` after byte `offset` (as `  HH:MM:SS  message`), and the
    offset to read from next time; a half-written last line waits for the next poll."""
    if not log_file.exists():
        return [], offset
    with open(log_file, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    complete = chunk[: chunk.rfind(b"\n") + 1]
    steps = [f"  {line.split(' ', 2)[1].split(',')[0]}  {line.split(marker, 1)[1]}"
             for line in complete.decode(errors="replace").splitlines() if marker in line]
    return steps, offset + len(complete)


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        config: Path = typer.Option(None, help="serving YAML (default: configs/serving.yaml or HUB_CONFIG)"),
        host: str = typer.Option(None, help="bind address (beyond loopback needs API keys)"),
        port: int = typer.Option(None, help="HTTP port"),
        address: str = typer.Option(None, help="join an existing Ray cluster (e.g. ray://head:10001 or auto)"),
        bootstrap: bool = typer.Option(True, "--bootstrap/--no-bootstrap",
                                       help="register the default models into an empty registry first"),
        detach: bool = typer.Option(False, "--detach", "-d", help="run in the background; `hub stop` ends it"),
    ) -> None:
        """Start Ray + Serve with the configured capabilities; Ctrl-C (or `hub stop`) ends it."""
        hub = running_hub()
        if hub is not None:
            typer.echo(f"error: a hub is already running from this HUB_HOME (pid {hub.pid}, {hub.url}); "
                       "`hub stop` ends it", err=True)
            raise typer.Exit(2)
        if detach:
            argv = ["--verbose"] if verbose() else []
            argv += ["serve", *_flags(config=config, host=host, port=port, address=address)]
            _serve_detached(argv + ([] if bootstrap else ["--no-bootstrap"]))
        else:
            _serve_foreground(config, host, port, address, bootstrap)

    @app.command("stop")
    def stop_command(timeout_s: float = typer.Option(120.0, help="wait this long, then give up")) -> None:
        """Stop the hub that `hub serve` started from this HUB_HOME."""
        hub = running_hub()
        if hub is None:
            typer.echo(f"no hub is running from this HUB_HOME ({state_path().parent.parent})")
            return
        os.kill(hub.pid, signal.SIGTERM)
        typer.echo(f"stopping the hub (pid {hub.pid}, {hub.url}) ...")
        deadline = time.monotonic() + timeout_s
        while pid_alive(hub.pid) and _is_running_hub(hub.pid):
            if time.monotonic() > deadline:
                typer.echo(f"error: pid {hub.pid} still runs after {timeout_s:.0f} s", err=True)
                raise typer.Exit(2)
            time.sleep(0.5)
        typer.echo("stopped")

    @app.command()
    def logs(
        follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new lines"),
        lines: int = typer.Option(50, "--lines", "-n", help="print the last N lines first"),
    ) -> None:
        """The hub's log (HUB_HOME/logs/serve.log)."""
        path = log_path()
        if not path.exists():
            typer.echo(f"no log yet at {path} (start the hub with `hub serve`)")
            return
        with open(path, "rb") as f:
            for line in f.read().decode(errors="replace").splitlines()[-lines:]:
                typer.echo(line)
            try:
                while follow:
                    chunk = f.read()
                    if chunk:
                        typer.echo(chunk.decode(errors="replace"), nl=False)
                    else:
                        time.sleep(0.5)
            except KeyboardInterrupt:
                return

    keys = typer.Typer(help="API keys for non-loopback binds.", no_args_is_help=True)
    app.add_typer(keys, name="keys")

    @keys.command("new")
    def new(name: str) -> None:
        """Print a fresh key (give it to the client) and the config entry that stores its digest."""
        from serving.auth import digest, new_key

        key = new_key()
        typer.echo(f"key: {key}")
        typer.echo(f"config (auth.keys): - {{name: {name}, sha256: {digest(key)}}}")


def _flags(**values) -> list[str]:
    out = []
    for key, value in values.items():
        if value is not None:
            out += [f"--{key}", str(value)]
    return out


def _is_running_hub(pid: int) -> bool:
    """The state file is removed by the hub on its way out; a zombie pid alone does not count."""
    hub = running_hub()
    return hub is not None and hub.pid == pid
