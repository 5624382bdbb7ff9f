"""`hub serve` and `hub keys`."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        config: Path = typer.Option(None, help="serving YAML (default: configs/serving.yaml or HUB_CONFIG)"),
        host: str = typer.Option(None, help="bind address (beyond loopback needs API keys)"),
        port: int = typer.Option(None, help="HTTP port"),
        address: str = typer.Option(None, help="join an existing Ray cluster (e.g. ray://head:10001 or auto)"),
        no_bootstrap: bool = typer.Option(False, help="do not register default models into an empty registry"),
    ) -> None:
        """Start Ray + Serve with the configured capabilities and block until Ctrl-C."""
        import logging

        from hub.errors import HubError
        from hub.settings import get_settings
        from serving.launch import start, stop

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        settings = get_settings()
        started = time.perf_counter()
        try:
            cfg = start(config or settings.config, host=host, port=port, address=address,
                        bootstrap=not no_bootstrap)
        except HubError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        typer.echo(f"hub ready in {time.perf_counter() - started:.1f} s on http://{cfg.http.host}:{cfg.http.port} "
                   f"(capabilities: {', '.join(sorted(cfg.capabilities))}; MLflow: {settings.tracking_uri})")
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        done.wait()
        typer.echo("shutting down")
        stop()

    keys = typer.Typer(help="API keys for non-loopback binds.", no_args_is_help=True)
    app.add_typer(keys, name="keys")

    @keys.command("new")
    def new(name: str) -> None:
        """Print a fresh key (give it to the client) and the config entry that stores its digest."""
        from serving.auth import digest, new_key

        key = new_key()
        typer.echo(f"key: {key}")
        typer.echo(f"config (auth.keys): - {{name: {name}, sha256: {digest(key)}}}")
