"""Bootstrap glue: the catalogue's default models, registered through `registry.bootstrap`.

Most defaults are shipped weights that the capability module copies (`prepare_default`). The default
`reason` model is a training run instead (there are no pretrained weights for the task): the training
pipeline makes it, and this entry point hands its function to the bootstrap, so that `models` never
imports `training`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hub.settings import HubSettings, get_settings
from registry.bootstrap import BootstrapResult, DefaultModel, bootstrap
from registry.store import MlflowStore

Prepare = Callable[[Path, Path], dict[str, Any]]


def _train_reason_default(shared: Path, dest: Path) -> dict[str, Any]:
    from training.textcls import train_default

    return train_default(shared, dest)


# Capabilities whose default model is made by a training pipeline, not copied from a package.
TRAINED_DEFAULTS: dict[str, Prepare] = {"reason": _train_reason_default}


def default_models(capabilities: Iterable[str], *, alternatives: bool = False) -> list[DefaultModel]:
    """The default model of each capability; with `alternatives`, also the other models its package
    can build (e.g. Whisper tiny.en beside the default Whisper base)."""
    from models.catalogue import get_entry

    out = []
    for name in capabilities:
        entry = get_entry(name)
        prepare = TRAINED_DEFAULTS.get(entry.capability)
        if prepare is None:
            def prepare(shared: Path, dest: Path, entry=entry) -> dict:
                return entry.prepare_default()(shared, dest)

        out.append(DefaultModel(entry.capability, entry.default_model, prepare))
        out += [_built_by(entry, model_name, function_name)
                for model_name, function_name in (entry.alternatives if alternatives else ())]
    return out


def _built_by(entry, model_name: str, function_name: str) -> DefaultModel:
    """A model other than the default that the capability's package builds with `function_name`."""

    def prepare(shared: Path, dest: Path) -> dict:
        return entry.prepare_alternative(function_name)(shared, dest)

    return DefaultModel(entry.capability, model_name, prepare)


def catalogue_model(capability: str, model_name: str) -> DefaultModel | None:
    """A model the catalogue can build for `capability` (default, alternative or opt-in), by name."""
    from models.catalogue import get_entry

    entry = get_entry(capability)
    buildable = entry.buildable()
    if model_name not in buildable:
        return None
    if model_name == entry.default_model:
        return default_models([capability])[0]
    return _built_by(entry, model_name, buildable[model_name])


def ensure_defaults(capabilities: Iterable[str], settings: HubSettings | None = None,
                    store: MlflowStore | None = None, *, alternatives: bool = False) -> list[BootstrapResult]:
    """Register the default model of each capability unless it already has a champion (and, with
    `alternatives`, the capability's alternative models, each as its own registered model)."""
    settings = settings or get_settings()
    store = store or MlflowStore.from_settings(settings)
    return bootstrap(store, default_models(capabilities, alternatives=alternatives), settings.shared_dir,
                     settings.home)
