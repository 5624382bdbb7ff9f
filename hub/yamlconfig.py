"""Reading the YAML configuration files (serving, streams, reason, hotline) the same way.

>>> data = read_yaml_mapping(Path("configs/serving.yaml"), "serving config")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hub.errors import InvalidInput


def read_yaml_mapping(path: Path | str, what: str) -> dict[str, Any]:
    """The top-level mapping of a YAML file (empty file: {}); errors name the file."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{what} {path}: expected a mapping at the top level")
    return data
