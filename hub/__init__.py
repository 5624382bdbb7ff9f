"""The contract every capability of the Ezhou AI capability hub stands on."""

from hub.contract import Blob, Capability, ModelInfo, Response, WireModel, run_batch, unwrap
from hub.errors import HubError

__all__ = ["Blob", "Capability", "HubError", "ModelInfo", "Response", "WireModel", "run_batch", "unwrap"]
