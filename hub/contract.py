"""The capability contract: every model the hub serves is a small class with `load()` and
`predict_batch()`; `run_batch()` is the one place that checks a batch's answer and stamps the
model identity on every response.

Example::

    class Echo:
        name = "echo"
        request_type = EchoRequest
        response_type = EchoResponse
        def load(self, artifact_dir: Path, device: str) -> None: ...
        def sample_request(self) -> EchoRequest: return EchoRequest(text="hi")
        def predict_batch(self, requests): return [EchoResponse(text=r.text) for r in requests]

    responses = run_batch(echo, [EchoRequest(text="a")], ModelInfo(name="echo", version="1"))
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, ValidationError

from hub.errors import HubError, InvalidInput


class WireModel(BaseModel):
    """Base of every request/response on the wire: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def invalid_input(exc: ValidationError, context: str | None = None) -> InvalidInput:
    """The one translation of a pydantic error into a 400 that names the first offending field."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or None
    prefix = f"{context}: " if context else ""
    return InvalidInput(f"{prefix}{where or 'body'}: {first.get('msg')}{_got(first)}", field=where)


def _got(error: dict) -> str:
    # The offending value, when it is a short scalar ("min_score: ... (got 1.5)"); never bytes, a
    # long text or a whole object, which would only echo the request back.
    value = error.get("input")
    if error.get("type") == "missing" or isinstance(value, bytes | dict | list) or value is None:
        return ""
    shown = repr(value)
    return f" (got {shown})" if len(shown) <= 40 else ""


def validate_as(model_type: type[M], payload: Any, context: str | None = None) -> M:
    """`model_type.model_validate(payload)`, with validation errors as `InvalidInput`."""
    if isinstance(payload, model_type):
        return payload
    try:
        return model_type.model_validate(payload)
    except ValidationError as exc:
        raise invalid_input(exc, context) from exc


class ModelInfo(WireModel):
    """Which model answered: echoed in every response."""

    name: str
    version: str
    alias: str | None = None


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("data:") and "," in text:  # data URLs from browsers
            text = text.split(",", 1)[1]
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"not valid base64: {exc}") from exc
    raise ValueError("expected base64 text or bytes")


# Binary payloads: base64 text in JSON, raw bytes from multipart uploads and Python callers.
Blob = Annotated[
    bytes,
    BeforeValidator(_to_bytes),
    PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), return_type=str, when_used="json"),
]


class Response(WireModel):
    """Base of capability responses; `model` is filled by `run_batch`, never by the capability."""

    model: ModelInfo | None = None


Req = TypeVar("Req", bound=WireModel)
Resp = TypeVar("Resp", bound=Response)


@runtime_checkable
class Capability(Protocol[Req, Resp]):
    """A servable ability. `predict_batch` may put a `HubError` in place of one item's response
    when only that item was bad (a corrupt image in a batch of good ones)."""

    name: ClassVar[str]
    request_type: ClassVar[type]
    response_type: ClassVar[type]

    def load(self, artifact_dir: Path, device: str) -> None: ...

    def sample_request(self) -> Req: ...

    def predict_batch(self, requests: Sequence[Req]) -> list[Resp | HubError]: ...


@dataclass
class BatchItems(Generic[T]):
    """A batch after each request's own checks (`prepare_each`): `out` holds, per request, its
    `HubError` or None (still to answer); `items[k]` is what request `slots[k]` prepared into."""

    out: list[Any]
    slots: list[int] = field(default_factory=list)
    items: list[T] = field(default_factory=list)


def prepare_each(requests: Sequence[Any], prepare: Callable[[Any], T]) -> BatchItems[T]:
    """Run `prepare` on every request of a batch; a `HubError` fails only its own request (a corrupt
    image among good ones), the good ones go on to the batched model call together."""
    batch: BatchItems[T] = BatchItems(out=[None] * len(requests))
    for i, request in enumerate(requests):
        try:
            batch.items.append(prepare(request))
        except HubError as exc:
            batch.out[i] = exc
        else:
            batch.slots.append(i)
    return batch


def run_batch(capability: Capability, requests: Sequence[Any], info: ModelInfo) -> list[Any]:
    """Run one batch and return, per request, a stamped response or a `HubError` instance.

    A capability that answers with the wrong count is a bug in the capability: every caller of
    the batch gets the same error rather than someone else's answer.
    """
    if not requests:
        return []
    out = capability.predict_batch(list(requests))
    if len(out) != len(requests):
        raise HubError(
            f"capability {capability.name!r} returned {len(out)} results for {len(requests)} requests"
        )
    stamped: list[Any] = []
    for item in out:
        if isinstance(item, HubError):
            stamped.append(item)
        elif isinstance(item, Exception):  # a foreign error leaking from a capability: keep it per item
            stamped.append(HubError(f"{type(item).__name__}: {item}"))
        else:
            stamped.append(item.model_copy(update={"model": info}))
    return stamped


def unwrap(result: Any) -> Any:
    """Raise the per-item error or return the response (used by callers of `run_batch`)."""
    if isinstance(result, BaseException):
        raise result
    return result


def require(condition: bool, message: str, field: str | None = None) -> None:
    """Guard for request validation inside capabilities."""
    if not condition:
        raise InvalidInput(message, field=field)
