"""Bootstrap: register the default model of each capability as version 1 alias `champion`.

Idempotent: a model that already has a `champion` is left alone, so a user's own registry with
their own versions is never overwritten. The capability modules make the artifact directories
(`prepare(shared_dir, out_dir) -> metadata`); this module only registers them, which keeps
`registry` free of imports from `models`.

>>> bootstrap(store, [DefaultModel("see", "yolov8n-coco", prepare_fn)], shared_dir)
"""

from __future__ import annotations

import fcntl
import json
import logging
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.store import MlflowStore

log = logging.getLogger(__name__)

CHAMPION = "champion"


@dataclass(frozen=True)
class DefaultModel:
    capability: str
    name: str
    prepare: Callable[[Path, Path], dict[str, Any]]


@dataclass(frozen=True)
class BootstrapResult:
    name: str
    version: str
    created: bool


def bootstrap(store: MlflowStore, defaults: Iterable[DefaultModel], shared_dir: Path, lock_dir: Path,
              *, alias: str = CHAMPION) -> list[BootstrapResult]:
    lock_dir.mkdir(parents=True, exist_ok=True)
    results = []
    with open(lock_dir / "bootstrap.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one bootstrapper at a time per hub home
        for default in defaults:
            current = store.alias_version(default.name, alias)
            if current is not None:
                results.append(BootstrapResult(default.name, current, created=False))
                continue
            with tempfile.TemporaryDirectory(prefix=f"bootstrap-{default.name}-") as tmp:
                out = Path(tmp) / "artifact"
                out.mkdir()
                log.info("preparing default model %s for %s", default.name, default.capability)
                metadata = default.prepare(shared_dir, out)
                hub_json = json.loads((out / "hub.json").read_text())
                if hub_json.get("capability") != default.capability:
                    raise ValueError(f"{default.name}: hub.json names capability {hub_json.get('capability')!r}")
                version = store.register(default.name, out, metadata={"capability": default.capability, **metadata},
                                         description=f"default {default.capability} model (bootstrapped)")
            store.set_alias(default.name, alias, version, reason="bootstrap")
            results.append(BootstrapResult(default.name, version, created=True))
    return results
