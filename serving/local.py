"""Serve one request in this process, without Ray: what the `hub see|read|listen|...` commands use.

>>> predict_local("see", {"image": jpeg_bytes}).detections
"""

from __future__ import annotations

from functools import cache
from typing import Any

from hub.contract import unwrap
from serving.deployment import CapabilityServer


@cache
def local_server(capability: str, model: str | None = None) -> CapabilityServer:
    from models.catalogue import get_entry
    from serving.config import CapabilityConfig
    from serving.defaults import ensure_defaults

    entry = get_entry(capability)
    if model is None:
        ensure_defaults([capability])
        model = f"models:/{entry.default_model}@champion"
    server = CapabilityServer(capability)
    server.configure(CapabilityConfig(model=model))
    return server


def predict_local(capability: str, request: Any, model: str | None = None) -> Any:
    """Validate `request` (dict or request model), run it as a batch of one, return the response."""
    server = local_server(capability, model)
    return unwrap(server.run([server.parse(request)])[0])
