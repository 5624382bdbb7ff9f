"""The contract every capability of the Ezhou AI capability hub stands on.

The names below load on first use (PEP 562), so that the CLI (`cli/`) does not pay for pydantic
models it may not need: a `hub see` against a running hub answers in well under a second.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["Blob", "Capability", "HubError", "ModelInfo", "Response", "WireModel", "run_batch", "unwrap"]
_HOME = {"HubError": "hub.errors", **{name: "hub.contract" for name in __all__ if name != "HubError"}}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    raise AttributeError(f"module 'hub' has no attribute {name!r}")
