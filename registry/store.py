"""The MLflow-backed model store: register artifact directories, move aliases with an audit
trail, resolve references to local, cached artifact directories.

Aliases only (stages are deprecated since MLflow 2.9). Every alias move pushes the previous
version on a per-alias stack (registered-model tag `hub.alias_stack.<alias>`) so `rollback` can
go back, and writes an audit tag on the version it moved to (`hub.audit.<utc-timestamp>`).

>>> store = MlflowStore.from_settings()
>>> v = store.register("yolov8n-coco", Path("artifact"), metadata={"capability": "see"})
>>> store.set_alias("yolov8n-coco", "champion", v, reason="first version")
>>> store.resolve("models:/yolov8n-coco@champion").artifact_dir
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from hub.errors import HubError, InvalidInput, ModelLoadError, ModelNotFound, RegistryUnavailable
from hub.settings import HubSettings, apply_runtime_env, get_settings
from registry.cache import ArtifactCache
from registry.integrity import DIGEST_TAG, check_artifact
from registry.ref import ModelRef

log = logging.getLogger(__name__)

EXPERIMENT = "hub-model-registrations"
ARTIFACT_SUBDIR = "model"
STACK_TAG = "hub.alias_stack."
AUDIT_TAG = "hub.audit."
MAX_STACK = 50


@dataclass(frozen=True)
class ResolvedModel:
    """A model version ready to load: where its files are locally and what it is."""

    name: str
    version: str
    alias: str | None
    artifact_dir: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    from_cache: bool = False  # the registry was unreachable: this is the last version known locally
    registry_error: str | None = None  # why the registry was not asked (when from_cache)


@dataclass(frozen=True)
class ModelSummary:
    name: str
    aliases: dict[str, str]
    latest_version: str | None
    description: str


@dataclass(frozen=True)
class AuditEntry:
    at: str
    name: str
    version: str
    alias: str
    action: str
    previous: str | None
    actor: str
    reason: str


class ModelStore(Protocol):
    def register(self, name: str, artifact_dir: Path, *, metadata: Mapping[str, Any], description: str = "",
                 run_id: str | None = None) -> str: ...
    def resolve(self, ref: ModelRef | str) -> ResolvedModel: ...
    def alias_version(self, name: str, alias: str) -> str | None: ...
    def set_alias(self, name: str, alias: str, version: str, *, reason: str = "") -> None: ...
    def rollback(self, name: str, alias: str = "champion", *, reason: str = "") -> str: ...


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _translate(exc: Exception, what: str) -> HubError:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException) and exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
        return ModelNotFound(f"{what} not found in the model registry")
    if isinstance(exc, MlflowException) and exc.error_code == "INVALID_PARAMETER_VALUE" and "alias" in str(exc):
        return ModelNotFound(f"{what} not found in the model registry")
    # Anything else (connection refused, a locked database, a 5xx) says nothing about whether the
    # model exists: it is an outage, and replicas may serve from their local cache meanwhile.
    return RegistryUnavailable(f"model registry unavailable for {what}: {type(exc).__name__}: {exc}")


class MlflowStore:
    """ModelStore on any MLflow tracking/registry URI (sqlite, file, http(s) server)."""

    def __init__(self, tracking_uri: str, registry_uri: str, artifact_root: Path | None, cache_dir: Path) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.artifact_root = artifact_root
        self.cache_dir = cache_dir
        self.local = ArtifactCache(cache_dir)
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)

    @classmethod
    def from_settings(cls, settings: HubSettings | None = None) -> MlflowStore:
        settings = apply_runtime_env(settings or get_settings())
        local = settings.tracking_uri.startswith(("sqlite:", "file:", "/")) or "://" not in settings.tracking_uri
        return cls(
            tracking_uri=settings.tracking_uri,
            registry_uri=settings.registry_uri,
            artifact_root=settings.artifact_root if local else None,  # a server decides its own store
            cache_dir=settings.cache_dir / "models",
        )

    # -- registration -------------------------------------------------------------------------
    def _experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(EXPERIMENT)
        if exp is not None:
            return exp.experiment_id
        location = self.artifact_root.as_uri() if self.artifact_root else None
        if self.artifact_root:
            self.artifact_root.mkdir(parents=True, exist_ok=True)
        return self.client.create_experiment(EXPERIMENT, artifact_location=location)

    def register(self, name: str, artifact_dir: Path, *, metadata: Mapping[str, Any], description: str = "",
                 run_id: str | None = None) -> str:
        """Log `artifact_dir` as artifacts of a run and create a new version of `name` from them."""
        from mlflow.exceptions import MlflowException

        artifact_dir = Path(artifact_dir)
        if not (artifact_dir / "hub.json").is_file():
            raise InvalidInput(f"{artifact_dir} has no hub.json: not a hub model artifact", field="artifact_dir")
        try:
            digest = check_artifact(artifact_dir)  # refused now rather than at every replica's load
        except ModelLoadError as exc:
            raise InvalidInput(exc.message, field="artifact_dir") from exc
        own_run = run_id is None
        if own_run:
            run_id = self.client.create_run(self._experiment_id(), run_name=f"register-{name}").info.run_id
        try:
            self.client.log_artifacts(run_id, str(artifact_dir), ARTIFACT_SUBDIR)
            source = f"{self.client.get_run(run_id).info.artifact_uri}/{ARTIFACT_SUBDIR}"
            try:
                self.client.get_registered_model(name)
            except MlflowException:
                self.client.create_registered_model(name, description=description or None)
            tags = {f"hub.{k}": str(v)[:4900] for k, v in metadata.items()}
            tags[DIGEST_TAG] = digest
            version = self.client.create_model_version(
                name, source=source, run_id=run_id, tags=tags, description=description or None
            )
        finally:
            if own_run:
                self.client.set_terminated(run_id)
        log.info("registered %s version %s from %s", name, version.version, artifact_dir)
        return str(version.version)

    # -- aliases ------------------------------------------------------------------------------
    def alias_version(self, name: str, alias: str) -> str | None:
        """The version `alias` points at; None if the model or alias does not exist. An unreachable
        registry raises `RegistryUnavailable` (it is not the same as "does not exist")."""
        try:
            version = str(self.client.get_model_version_by_alias(name, alias).version)
        except Exception as exc:
            error = _translate(exc, f"models:/{name}@{alias}")
            if isinstance(error, ModelNotFound):
                return None
            raise error from exc
        self.local.remember_alias(name, alias, version)
        return version

    def last_known(self, name: str, alias: str) -> str | None:
        """The version `alias` pointed at when the registry last answered, if its files are here."""
        last = self.local.last_alias(name, alias)
        return last[0] if last else None

    def _stack(self, name: str, alias: str) -> list[str]:
        tags = self.client.get_registered_model(name).tags
        raw = tags.get(STACK_TAG + alias, "")
        return [v for v in raw.split(",") if v]

    def set_alias(self, name: str, alias: str, version: str, *, reason: str = "", action: str = "promote") -> None:
        """Point `alias` at `version`, remembering the previous target for rollback."""
        version = str(version)
        try:
            self.client.get_model_version(name, version)
        except Exception as exc:
            raise _translate(exc, f"model {name!r} version {version}") from exc
        previous = self.alias_version(name, alias)
        if previous == version:
            return
        self.client.set_registered_model_alias(name, alias, version)
        if action == "promote" and previous is not None:
            stack = (self._stack(name, alias) + [previous])[-MAX_STACK:]
            self.client.set_registered_model_tag(name, STACK_TAG + alias, ",".join(stack))
        self._audit(name, version, alias, action, previous, reason)

    def rollback(self, name: str, alias: str = "champion", *, reason: str = "") -> str:
        """Move `alias` back to the version it pointed at before the last promotion."""
        stack = self._stack(name, alias)
        if not stack:
            raise InvalidInput(f"{name}@{alias} has no earlier version to roll back to", field="name")
        target = stack.pop()
        self.client.set_registered_model_tag(name, STACK_TAG + alias, ",".join(stack))
        self.set_alias(name, alias, target, reason=reason or "rollback", action="rollback")
        return target

    def _audit(self, name: str, version: str, alias: str, action: str, previous: str | None, reason: str) -> None:
        entry = {"alias": alias, "action": action, "previous": previous, "actor": _actor(), "reason": reason}
        self.client.set_model_version_tag(name, version, AUDIT_TAG + _now(), json.dumps(entry, ensure_ascii=False))

    def history(self, name: str) -> list[AuditEntry]:
        """Every alias move of `name`, oldest first: who served what and when."""
        entries = []
        for mv in self.client.search_model_versions(f"name='{name}'"):
            for key, value in mv.tags.items():
                if key.startswith(AUDIT_TAG):
                    data = json.loads(value)
                    entries.append(AuditEntry(at=key[len(AUDIT_TAG):], name=name, version=str(mv.version),
                                              alias=data["alias"], action=data["action"], previous=data["previous"],
                                              actor=data["actor"], reason=data.get("reason", "")))
        return sorted(entries, key=lambda e: e.at)

    # -- listing ------------------------------------------------------------------------------
    def list_models(self) -> list[ModelSummary]:
        out = []
        for rm in self.client.search_registered_models(max_results=1000):
            versions = [int(v.version) for v in self.client.search_model_versions(f"name='{rm.name}'")]
            out.append(ModelSummary(name=rm.name, aliases={a: str(v) for a, v in (rm.aliases or {}).items()},
                                    latest_version=str(max(versions)) if versions else None,
                                    description=rm.description or ""))
        return sorted(out, key=lambda s: s.name)

    def has_version(self, name: str, version: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_model_version(name, str(version))
            return True
        except MlflowException:
            return False

    # -- resolution ---------------------------------------------------------------------------
    def resolve(self, ref: ModelRef | str) -> ResolvedModel:
        """Find the version a reference names and return its artifacts on local disk (cached)."""
        ref = ModelRef.parse(ref)
        try:
            if ref.alias:
                mv = self.client.get_model_version_by_alias(ref.name, ref.alias)
            else:
                mv = self.client.get_model_version(ref.name, ref.version)
        except Exception as exc:
            error = _translate(exc, f"model {ref}")
            cached = self._from_cache(ref, error) if isinstance(error, RegistryUnavailable) else None
            if cached is None:
                raise error from exc
            return cached
        version = str(mv.version)
        local = self._download(ref.name, version, mv.source)
        expected = (mv.tags or {}).get(DIGEST_TAG)
        if expected is None:  # registered around MlflowStore.register, or before digests were recorded
            log.warning("model %s version %s has no recorded sha256; checking its content only", ref.name, version)
        check_artifact(local, expected)  # ModelLoadError: the version is refused, the old one keeps serving
        metadata = json.loads((local / "hub.json").read_text())
        if ref.alias:
            self.local.remember_alias(ref.name, ref.alias, version)
        return ResolvedModel(name=ref.name, version=version, alias=ref.alias, artifact_dir=local, metadata=metadata)

    def _from_cache(self, ref: ModelRef, error: HubError) -> ResolvedModel | None:
        """The registry is unreachable: the version the reference last named, if its files are here
        (checked when they were downloaded; a version's files never change)."""
        version = self.last_known(ref.name, ref.alias) if ref.alias else ref.version
        local = self.local.version_dir(ref.name, version) if version else None
        if local is None:
            return None
        log.warning("model registry unreachable; %s served from the local cache as version %s (%s)", ref, version,
                    error.message)
        return ResolvedModel(name=ref.name, version=str(version), alias=ref.alias, artifact_dir=local,
                             metadata=json.loads((local / "hub.json").read_text()), from_cache=True,
                             registry_error=error.message)

    def _download(self, name: str, version: str, source: str) -> Path:
        import mlflow.artifacts

        target = self.cache_dir / name / version
        if (target / ".complete").exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # left half-written by a crash: start again
            shutil.rmtree(target, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
        try:
            local = Path(mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=str(staging), tracking_uri=self.tracking_uri))
            if not (local / "hub.json").is_file():
                raise ModelNotFound(f"model {name} version {version} has no hub.json in its artifacts ({source})")
            (local / ".complete").write_text(str(time.time()))
            try:
                os.replace(local, target)  # atomic: concurrent replicas never see half a download
            except OSError:
                if not (target / ".complete").exists():
                    raise
        except HubError:
            raise
        except Exception as exc:
            # The version exists (the registry just named it): failing to fetch its files is the
            # artifact store's fault, for now — retried with back-off, never a refusal of the version.
            raise RegistryUnavailable(f"artifacts of {name} version {version} could not be fetched: "
                                      f"{type(exc).__name__}: {exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target
