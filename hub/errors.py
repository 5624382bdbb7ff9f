"""The one error tree of the hub. Every error a caller can see is a HubError with an HTTP status.

Foreign errors (PIL, MLflow, ffmpeg, onnxruntime) are translated into these at the boundary that
meets them; `serving.ingress` maps them to HTTP in one handler.

>>> raise InvalidInput("image is not a JPEG/PNG", field="image")
"""

from __future__ import annotations

import math


class HubError(Exception):
    """Base of all errors the hub reports to a caller."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __reduce__(self):  # keep kw-only `field` across pickling (Ray ships errors between processes)
        return (_rebuild, (type(self), self.message, self.field))

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers that go with this error (e.g. Retry-After)."""
        return {}

    def to_dict(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return body


def _rebuild(cls: type[HubError], message: str, field: str | None) -> HubError:
    return cls(message, field=field)


class InvalidInput(HubError):
    status_code, code = 400, "invalid_input"


class Unauthorized(HubError):
    status_code, code = 401, "unauthorized"


class NotFound(HubError):
    status_code, code = 404, "not_found"


class ModelNotFound(NotFound):
    status_code, code = 404, "model_not_found"


class PayloadTooLarge(HubError):
    status_code, code = 413, "payload_too_large"


class UnsupportedMediaType(HubError):
    status_code, code = 415, "unsupported_media_type"


class Unprocessable(HubError):
    """Well-formed input the capability cannot serve (e.g. a language no registered model knows)."""

    status_code, code = 422, "unprocessable"


class ModelLoadError(HubError):
    status_code, code = 500, "model_load_failed"


class Overloaded(HubError):
    """Refused to protect latency; `retry_after_s` becomes the `Retry-After` header."""

    status_code, code = 503, "overloaded"

    def __init__(self, message: str, *, field: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after_s = retry_after_s

    def __reduce__(self):
        return (_rebuild_overloaded, (type(self), self.message, self.field, self.retry_after_s))

    @property
    def headers(self) -> dict[str, str]:
        # whole seconds (RFC 9110); at least 1 so that clients do not retry in a tight loop
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s or 1)))}


def _rebuild_overloaded(cls: type[Overloaded], message: str, field: str | None,
                        retry_after_s: float | None) -> Overloaded:
    return cls(message, field=field, retry_after_s=retry_after_s)


class Conflict(HubError):
    """The resource is held by someone else (e.g. a second hub on one HUB_HOME)."""

    status_code, code = 409, "conflict"


class NotReady(HubError):
    status_code, code = 503, "not_ready"


class RegistryUnavailable(NotReady):
    """The model registry cannot be reached or answered with an error: not the same as "no such model"."""

    status_code, code = 503, "registry_unavailable"


class InferenceTimeout(HubError):
    status_code, code = 504, "inference_timeout"
