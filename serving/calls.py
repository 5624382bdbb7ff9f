"""What the ingress and the routers it includes (streams, hotline, review, ui) share: the serving
config of this replica, a deployment call with a deadline, and a capped body read.

A module of its own so that the routers import it and the ingress imports the routers, both at
the top of the file; they used to import the ingress back at call time, behind an importlib loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request
from pydantic import BaseModel

from hub.errors import InferenceTimeout, InvalidInput, Overloaded, PayloadTooLarge
from serving.body import parse_json

# This replica's state, set by the Ingress constructor: config, capabilities, keys, admission board.
STATE: dict[str, Any] = {}


def current_config():
    """The ServingConfig this ingress replica was built with (KeyError before construction)."""
    return STATE["config"]


def unwrap_remote(exc: BaseException) -> BaseException:
    """Turn Ray's wrappers back into the hub error raised inside a replica."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError
    from ray.serve.exceptions import BackPressureError

    if isinstance(exc, RayTaskError) and isinstance(getattr(exc, "cause", None), BaseException):
        return unwrap_remote(exc.cause)
    if isinstance(exc, BackPressureError):
        return Overloaded("the capability's queue is full; retry later", retry_after_s=1.0)
    if isinstance(exc, ActorDiedError | ActorUnavailableError):
        return Overloaded("a replica is restarting; retry later")
    return exc


async def call(response: Any, timeout_s: float) -> Any:
    """Await a deployment handle's response; past `timeout_s` it is cancelled and answers 504."""
    try:
        return await asyncio.wait_for(_await(response), timeout=timeout_s)
    except TimeoutError:
        response.cancel()
        raise InferenceTimeout(f"no answer within {timeout_s:.0f} s") from None
    except Exception as exc:
        raise unwrap_remote(exc) from None


async def _await(response: Any) -> Any:
    return await response


def documented_body(model: type[BaseModel], *, required: bool = True, multipart: bool = False) -> dict:
    """`openapi_extra` for a route that parses its body itself (bounded: serving/body.py): declares
    `model`'s schema, so /openapi.json, its clients and the fuzz suite know what to send. The
    ingress moves the schema's `$defs` into the OpenAPI components."""
    schema = model.model_json_schema()
    content = {"application/json": {"schema": schema}}
    if multipart:
        content["multipart/form-data"] = {"schema": schema}
    return {"requestBody": {"required": required, "content": content}}


async def upload_fields(request: Request, body: bytes, upload_field: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A request that is not JSON, as fields: a multipart form (its file part as `upload_field`, the
    other parts as values) or the raw media body (image/*, audio/*, octet-stream) as `upload_field`,
    added to `fields` (the caller's query parameters). `body` is what `read_body` read."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        return {**fields, upload_field: body}
    fields = dict(fields)
    form = await request.form()
    for key, value in form.multi_items():
        if hasattr(value, "read"):
            fields[upload_field] = await value.read()
        elif value.strip():  # an empty form field means "not given", not an empty value
            fields[key] = _maybe_json(value)
    if upload_field not in fields:
        raise InvalidInput(f"multipart upload has no file part (expected field {upload_field!r})", field=upload_field)
    return fields


def _maybe_json(value: str) -> Any:
    # form fields are strings; lists like classes=["bus","person"] arrive as JSON text
    text = value.strip()
    if text[:1] in "[{":
        try:
            return parse_json(text.encode(), what="form field")
        except InvalidInput:
            return value
    return value


async def read_body(request: Request, limit_bytes: int) -> bytes:
    """The whole body, refused (413) as soon as it passes `limit_bytes`, declared or streamed."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit_bytes:
        raise PayloadTooLarge(f"body of {declared} bytes is over the limit of {limit_bytes} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise PayloadTooLarge(f"body is over the limit of {limit_bytes} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # starlette's form parser reads the cached body
    return body
