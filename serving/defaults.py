"""Bootstrap glue: the catalogue's default models, registered through `registry.bootstrap`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hub.settings import HubSettings, get_settings
from registry.bootstrap import BootstrapResult, DefaultModel, bootstrap
from registry.store import MlflowStore


def default_models(capabilities: Iterable[str]) -> list[DefaultModel]:
    from models.catalogue import get_entry

    out = []
    for name in capabilities:
        entry = get_entry(name)

        def prepare(shared: Path, dest: Path, entry=entry) -> dict:
            return entry.prepare_default()(shared, dest)

        out.append(DefaultModel(entry.capability, entry.default_model, prepare))
    return out


def ensure_defaults(capabilities: Iterable[str], settings: HubSettings | None = None,
                    store: MlflowStore | None = None) -> list[BootstrapResult]:
    """Register the default model of each capability unless it already has a champion."""
    settings = settings or get_settings()
    store = store or MlflowStore.from_settings(settings)
    return bootstrap(store, default_models(capabilities), settings.shared_dir, settings.home)
