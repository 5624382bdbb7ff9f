"""What a replica may serve while the registry is away: downloaded versions and the last version
each alias was seen pointing at.

`<cache_dir>/<name>/<version>/` holds a downloaded artifact (`.complete` once whole, see
`MlflowStore._download`). `<cache_dir>/<name>/.aliases/<alias>.json` records the version an alias
resolved to, and when, each time the registry answered. When the registry cannot be reached a
replica starts from that version, says so (`from_cache`, `registry_error`), and follows the alias
again once the registry is back.

>>> cache = ArtifactCache(Path(".hub/cache/models"))
>>> cache.remember_alias("yolov8n-coco", "champion", "3")
>>> cache.last_alias("yolov8n-coco", "champion")       # ("3", 1764430000.0) if version 3 is complete
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)


class ArtifactCache:
    """Local, per-machine knowledge of versions and aliases. Example: `ArtifactCache(dir).version_dir(n, v)`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def version_dir(self, name: str, version: str) -> Path | None:
        """The complete local copy of `name` version `version`, or None."""
        path = self.root / name / str(version)
        return path if (path / ".complete").exists() and (path / "hub.json").is_file() else None

    def remember_alias(self, name: str, alias: str, version: str) -> None:
        """Record what the registry said `alias` is now (atomic; best effort: a read-only cache
        only loses the fallback, never the resolution that just worked)."""
        folder = self.root / name / ".aliases"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{alias}.", dir=folder)
            with os.fdopen(fd, "w") as fh:
                json.dump({"version": str(version), "seen_wall": time.time()}, fh)
            os.replace(tmp, folder / f"{alias}.json")
        except OSError as exc:
            log.warning("cannot record %s@%s -> %s in the local cache: %s", name, alias, version, exc)

    def last_alias(self, name: str, alias: str) -> tuple[str, float] | None:
        """(version, when it was seen) of the alias's last known target whose files are here."""
        try:
            data = json.loads((self.root / name / ".aliases" / f"{alias}.json").read_text())
            version, seen = str(data["version"]), float(data["seen_wall"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return (version, seen) if self.version_dir(name, version) is not None else None
