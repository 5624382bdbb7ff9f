"""`hub models bootstrap|list|promote|rollback|history|register`: what ops do with the registry."""

from __future__ import annotations

import json
from pathlib import Path

import typer

models = typer.Typer(help="The MLflow model registry: versions and aliases.", no_args_is_help=True)


def _store():
    from registry.store import MlflowStore

    return MlflowStore.from_settings()


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2) from exc


@models.command()
def bootstrap(
    shared: Path = typer.Option(None, help="folder with the default weights (default: ../shared or HUB_SHARED_DIR)"),
    capability: list[str] = typer.Option(None, help="only these capabilities (repeatable)"),
) -> None:
    """Register the default model of each capability as version 1 @champion (idempotent)."""
    from cli.commands._output import Steps, quiet
    from hub.errors import HubError
    from hub.settings import get_settings
    from models.catalogue import CAPABILITIES, get_entry
    from serving.defaults import ensure_defaults

    settings = get_settings()
    if shared is not None:
        settings = settings.model_copy(update={"shared_dir": shared.resolve()})
    quiet()
    step = Steps()
    store = _store()
    try:
        for name in capability or list(CAPABILITIES):
            default = get_entry(name).default_model
            if store.alias_version(default, "champion") is None:
                step(f"{name}: preparing the default model {default}")
            started = step.elapsed_s()
            for r in ensure_defaults([name], settings, store, alternatives=True):
                took = f"registered in {step.elapsed_s() - started:.1f} s" if r.created else "already there"
                step(f"{name}: {r.name} version {r.version} @champion ({took})")
    except HubError as exc:
        _fail(exc)


@models.command("list")
def list_models(as_json: bool = typer.Option(False, "--json")) -> None:
    """Registered models, their aliases and latest version."""
    rows = _store().list_models()
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in rows], indent=2))
        return
    for r in rows:
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(r.aliases.items())) or "-"
        typer.echo(f"{r.name:28s} latest={r.latest_version:4s} {aliases}")


@models.command()
def promote(name: str,
            version: str = typer.Argument(..., help="a version number, or an alias whose version to take "
                                                    "(e.g. challenger: what `hub train` registered)"),
            alias: str = typer.Option("champion"),
            reason: str = typer.Option("", help="recorded in the audit trail")) -> None:
    """Point ALIAS of NAME at VERSION; serving follows without a restart."""
    from hub.errors import HubError, ModelNotFound

    try:
        store = _store()
        if not version.isdigit():
            named = store.alias_version(name, version)
            if named is None:
                raise ModelNotFound(f"{name} has no alias {version!r} (see `hub models list`)")
            version = str(named)
        store.set_alias(name, alias, version, reason=reason)
    except HubError as exc:
        _fail(exc)
    typer.echo(f"{name}@{alias} -> version {version}")


@models.command()
def rollback(name: str, alias: str = typer.Option("champion"), reason: str = typer.Option("")) -> None:
    """Move ALIAS back to the version it pointed at before the last promotion."""
    from hub.errors import HubError

    try:
        version = _store().rollback(name, alias, reason=reason)
    except HubError as exc:
        _fail(exc)
    typer.echo(f"{name}@{alias} -> version {version} (rolled back)")


@models.command()
def history(name: str) -> None:
    """Audit trail: every alias move of NAME, who made it and when."""
    for e in _store().history(name):
        typer.echo(f"{e.at}  {e.alias}: {e.previous or '-'} -> {e.version}  {e.action} by {e.actor}  {e.reason}")


@models.command("register")
def register_model(
    capability: str,
    artifact_dir: Path,
    name: str = typer.Option(None, help="registered model name (default: the capability's default model)"),
    alias: str = typer.Option(None, help="also point this alias at the new version (e.g. champion)"),
    device: str = typer.Option("cpu", help="where the artifact is test-loaded before it is registered"),
) -> None:
    """Register ARTIFACT_DIR as a new version of a model served by CAPABILITY.

    A directory without hub.json is described by the capability module (`describe_artifact`),
    e.g. a CTranslate2 Whisper folder for `listen`. The artifact is loaded and must answer its
    capability's sample request first: a broken artifact (a truncated ONNX, say) is refused here,
    not by every replica later.
    """
    from hub.errors import HubError
    from models.catalogue import get_entry

    try:
        entry = get_entry(capability)
        hub_json = artifact_dir / "hub.json"
        if not hub_json.exists():
            describe = getattr(entry.load_module(), "describe_artifact", None)
            if describe is None:
                raise HubError(f"{artifact_dir} has no hub.json and {capability} cannot describe it")
            hub_json.write_text(json.dumps(describe(artifact_dir), ensure_ascii=False, indent=2))
        meta = json.loads(hub_json.read_text())
        if meta.get("capability") != capability:
            raise HubError(f"{hub_json} is for capability {meta.get('capability')!r}, not {capability!r}")
        model_name = name or entry.default_model
        _validate(entry, artifact_dir, model_name, device)
        store = _store()
        version = store.register(model_name, artifact_dir, metadata={"capability": capability,
                                                                      "format": meta.get("format", "")})
        if alias:
            store.set_alias(model_name, alias, version, reason="registered by ops")
    except HubError as exc:
        _fail(exc)
    typer.echo(f"{model_name}: registered version {version}" + (f" @{alias}" if alias else ""))


def _validate(entry, artifact_dir: Path, model_name: str, device: str) -> None:
    """Load the artifact as a replica would and run its sample request; HubError if it fails."""
    from hub.contract import ModelInfo
    from hub.errors import InvalidInput, ModelLoadError
    from serving.lifecycle import load_and_warm

    typer.echo(f"checking {artifact_dir}: loading it and running the {entry.capability} sample request ...")
    try:
        capability = load_and_warm(entry.load_class(), artifact_dir, device,
                                   ModelInfo(name=model_name, version="candidate", alias=None))
    except ModelLoadError as exc:
        raise InvalidInput(f"not registered: {exc}", field="artifact_dir") from exc
    if hasattr(capability, "close"):
        capability.close()


def mlflow_ui_command(tracking_uri: str, artifact_root: Path, host: str, port: int) -> list[str]:
    """The `mlflow ui` command line that shows the hub's runs, registered models, aliases and audit tags."""
    import sys

    mlflow = Path(sys.executable).with_name("mlflow")
    return [str(mlflow), "ui", "--backend-store-uri", tracking_uri,
            "--default-artifact-root", artifact_root.as_uri(), "--host", host, "--port", str(port)]


def register(app: typer.Typer) -> None:
    app.add_typer(models, name="models")

    @app.command("mlflow-ui")
    def mlflow_ui(host: str = typer.Option("127.0.0.1", help="bind address of the UI"),
                  port: int = typer.Option(5000, help="port of the UI"),
                  dry_run: bool = typer.Option(False, "--print", help="only print the command")) -> None:
        """Open the MLflow UI on the hub's tracking store (runs, model versions, aliases, audit tags)."""
        import subprocess

        from hub.settings import get_settings

        settings = get_settings()
        if not settings.tracking_uri.startswith("sqlite:"):
            typer.echo(f"the hub tracks to {settings.tracking_uri}: open that server's UI")
            return
        cmd = mlflow_ui_command(settings.tracking_uri, settings.artifact_root, host, port)
        typer.echo(" ".join(cmd))
        if dry_run:
            return
        typer.echo(f"MLflow UI on http://{host}:{port} (Ctrl-C ends it)")
        try:
            raise typer.Exit(subprocess.call(cmd))
        except KeyboardInterrupt:
            return
