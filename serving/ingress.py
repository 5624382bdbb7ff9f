"""The HTTP face of the hub: one FastAPI app behind Ray Serve.

    POST /v1/<capability>          JSON, multipart upload, or raw image/audio bytes
    POST /v1/<capability>/<extra>  capability-specific actions (e.g. /v1/reason/cases)
    GET  /v1/models                what is served, which version
    GET  /healthz /readyz /metrics /docs

Errors of every kind are answered by one handler: a HubError keeps its status, a validation
error is 400 naming the field, anything else is 500 and the replica keeps running.
"""


import asyncio
import logging
import time
import urllib.request
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.contract import invalid_input
from hub.errors import HubError, InvalidInput, NotFound
from hub.settings import get_settings
from serving import hotline_api, review_api, streams_api, ui
from serving.admission import AdmissionBoard, RouteDeadline, client_timeout_s, route_deadline
from serving.auth import OPEN_PATHS, KeyRing
from serving.body import parse_json
from serving.calls import STATE, call, current_config, read_body, unwrap_remote, upload_fields
from serving.guard import GuardSettings, RequestGuard
from serving.handles import get_handle, served, set_handles
from serving.metrics_filter import select_families

log = logging.getLogger("ray.serve")

app = FastAPI(
    title="Ezhou AI capability hub",
    description="see (detection), read (OCR), listen (ASR), speak (TTS), reason (hotline classification). "
    "Every response names the model and version that answered it.",
    version="0.1.0",
)
_STATE = STATE  # this replica's config, capabilities, keys and admission board (serving/calls.py)


def error_response(exc: Exception) -> JSONResponse:
    exc = unwrap_remote(exc)
    if isinstance(exc, HubError):
        return JSONResponse(status_code=exc.status_code, content={"error": exc.to_dict()}, headers=exc.headers or None)
    log.exception("unexpected error", exc_info=exc)
    return JSONResponse(status_code=500, content={"error": {"code": "internal_error", "message": str(exc)[:500]}})


@app.exception_handler(HubError)
async def _hub_error(request: Request, exc: HubError) -> JSONResponse:
    return error_response(exc)


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # Starlette's own answers (unknown path, wrong method) in the hub's error shape, not {"detail": ...}
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(status_code=exc.status_code, headers=getattr(exc, "headers", None),
                        content={"error": {"code": code, "message": str(exc.detail)}})


@app.exception_handler(RequestValidationError)
async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    # a query or path parameter of the wrong type: 400 naming it, like every other validation error
    return error_response(invalid_input(exc))


@app.exception_handler(Exception)
async def _any_error(request: Request, exc: Exception) -> JSONResponse:
    # Ray's wrappers of a replica's HubError land here; unwrap_remote turns them back into 4xx
    return error_response(exc)


class AuthMiddleware:
    """API keys on every route but the open ones; the review pages also take a login session.

    Pure ASGI rather than Starlette's BaseHTTPMiddleware: that one runs each request's downstream
    app in a task of its own and passes the response through memory streams, CPU that every
    request (and every refusal) paid in the single ingress replica (issue 11)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        keys: KeyRing | None = _STATE.get("keys")
        if scope["type"] != "http" or keys is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope)  # headers and cookies only: the body stays for the route
        path = request.url.path
        if path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if _is_ui(path) and "authorization" not in request.headers:
            # the review pages: a login form and a session cookie
            denied = ui.browser_gate(request, keys)
            await (denied or self.app)(scope, receive, send)
            return
        try:
            request.state.key_name = keys.check(request.headers.get("authorization"))
        except HubError as exc:
            await error_response(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _has_key(request: Request) -> bool:
    """True when no key is required or the request carries a valid one (open paths check it here)."""
    keys: KeyRing | None = _STATE.get("keys")
    if keys is None:
        return True
    try:
        keys.check(request.headers.get("authorization"))
    except HubError:
        return False
    return True


def _is_ui(path: str) -> bool:
    return path == "/ui" or path.startswith("/ui/")


app.add_middleware(AuthMiddleware)
# outermost: the deadline covers authentication and body reading too (Starlette: last added = outer)
app.add_middleware(RouteDeadline, deadline_s=lambda path: _deadline(path),
                   on_refused=lambda path, ms: _refused(path, ms))
# outermost of all: Host check, CSRF defence and the body cap of every route (serving/guard.py)
app.add_middleware(RequestGuard, settings=lambda: _guard_settings())


def _refused(path: str, ms: float) -> None:
    board: AdmissionBoard | None = _STATE.get("admission")
    if board is not None:
        board.refusal(path, ms)


def _guard_settings() -> GuardSettings:
    cfg = _STATE.get("config")
    if cfg is None:  # the app served without an Ingress (in-process tests): no Host check, default cap
        return GuardSettings(loopback=False)
    return GuardSettings(max_body_bytes=cfg.http.max_body_bytes, allowed_hosts=tuple(cfg.http.allowed_hosts),
                         loopback=cfg.http.loopback)


# The pipelines' routes (cameras, hotline, review, the operators' pages).
for _router in (streams_api.router, hotline_api.router, review_api.router, ui.router):
    app.include_router(_router)


def build_asgi_app() -> FastAPI:
    """Called inside the ingress replica after `Ingress.__init__`, so routes use real module state
    (an app object handed to `serve.ingress` would be pickled with copies of it)."""
    return app


class Ingress:
    """Routes HTTP to the capability deployments it was bound with (keyword = capability name)."""

    def __init__(self, config: dict, **handles: Any) -> None:
        from serving.config import ServingConfig

        cfg = ServingConfig.model_validate(config)
        set_handles(handles)
        _STATE["config"] = cfg
        _STATE["capabilities"] = sorted(cfg.capabilities)
        _STATE["keys"] = KeyRing.from_config(cfg.auth, cfg.auth_required, get_settings().api_keys)
        from serving.metrics import IngressMetrics

        _STATE["admission"] = AdmissionBoard.from_config(cfg, IngressMetrics())
        # Ray runs this constructor inside the replica's event loop: fetch schemas for /docs meanwhile
        _STATE["schema_task"] = asyncio.get_running_loop().create_task(_load_schemas())


SCHEMA_RETRY_S = 2.0


async def _load_schemas() -> None:
    """Fetch every capability's schema for /openapi.json, trying again until each has answered: a
    model that loads slowly (Whisper on a small CPU) misses the first try, and its route would
    otherwise be missing from /openapi.json (and from the fuzz suite) until someone called it."""
    pending = list(_STATE["capabilities"])
    while pending:
        for name in list(pending):
            try:
                await _schema(name)
                pending.remove(name)
            except Exception as exc:  # still loading; /docs shows it without schema meanwhile
                log.info("no schema for %s yet (trying again): %s", name, exc)
        if pending:
            await asyncio.sleep(SCHEMA_RETRY_S)


def _openapi() -> dict:
    """The generic routes' OpenAPI, plus one documented path per served capability."""
    from fastapi.openapi.utils import get_openapi

    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in sorted(_STATE.get("schemas", {}).items()):
        for part in ("request", "response"):
            body = dict(schema[part])
            components.update(body.pop("$defs", {}))
            components[f"{name}_{part}"] = body
        ref = {"$ref": f"#/components/schemas/{name}_request"}
        content = {"application/json": {"schema": ref}}
        if schema.get("upload_field"):
            content["multipart/form-data"] = {"schema": ref}
        spec["paths"][f"/v1/{name}"] = {"post": {
            "tags": ["capabilities"], "summary": f"{name}", "operationId": f"predict_{name}",
            "requestBody": {"required": True, "content": content},
            "responses": {"200": {"description": "the answer, with the model that gave it",
                                  "content": {"application/json": {"schema": {
                                      "$ref": f"#/components/schemas/{name}_response"}}}}}}}
    for operations in spec["paths"].values():  # bodies declared with serving.calls.documented_body
        for operation in operations.values():
            for media in operation.get("requestBody", {}).get("content", {}).values():
                components.update(media.get("schema", {}).pop("$defs", {}))
    return _fix_refs(spec)


def _fix_refs(node: Any) -> Any:
    # pydantic writes "#/$defs/X" (in `$ref`, and in a discriminator's mapping); in OpenAPI those
    # live under components/schemas
    if isinstance(node, dict):
        return {k: _fix_refs(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fix_refs(v) for v in node]
    if isinstance(node, str) and node.startswith("#/$defs/"):
        return "#/components/schemas/" + node.removeprefix("#/$defs/")
    return node


app.openapi = _openapi


IngressDeployment = serve.deployment(serve.ingress(build_asgi_app)(Ingress))


async def _schema(capability: str) -> dict:
    schemas = _STATE.setdefault("schemas", {})
    if capability not in schemas:
        schemas[capability] = await call(get_handle(capability).schemas.remote(), 30)
    return schemas[capability]


def _capability(capability: str) -> str:
    if capability not in _STATE["capabilities"]:
        raise NotFound(f"unknown capability {capability!r}; served: {_STATE['capabilities']}")
    return capability


def _timeout(capability: str) -> float:
    return current_config().capabilities[capability].timeout_s


def _deadline(path: str) -> float | None:
    config = _STATE.get("config")
    if config is None:
        return None
    return route_deadline(path, capabilities={n: c.timeout_s for n, c in config.capabilities.items()},
                          request_timeout_s=config.http.request_timeout_s)


async def _statuses() -> list[dict]:
    async def one(name: str) -> dict:
        try:
            return await call(get_handle(name).status.remote(), 10)
        except Exception as exc:
            return {"capability": name, "ready": False, "last_error": str(unwrap_remote(exc))}

    return list(await asyncio.gather(*(one(n) for n in _STATE["capabilities"])))


@app.get("/healthz", tags=["ops"])
async def healthz() -> dict:
    return {"status": "ok"}


@app.get("/readyz", tags=["ops"])
async def readyz(request: Request) -> JSONResponse:
    statuses = await _statuses()
    if not _has_key(request):  # probes see ready or not; model errors only with a key
        statuses = [{"capability": s.get("capability"), "ready": bool(s.get("ready"))} for s in statuses]
    content: dict[str, Any] = {"capabilities": statuses}
    ready = all(s.get("ready") for s in statuses)
    if "streams" in served():  # events that cannot be written (a full disk) make the hub not ready
        try:
            content["streams"] = await call(get_handle("streams").health.remote(), 10)
        except Exception as exc:
            content["streams"] = {"healthy": False, "problems": [str(unwrap_remote(exc))]}
        ready = ready and content["streams"]["healthy"]
        if not _has_key(request):
            content["streams"] = {"healthy": content["streams"]["healthy"]}
    return JSONResponse(status_code=200 if ready else 503, content={"ready": ready, **content})


@app.get("/v1/models", tags=["ops"])
async def models() -> dict:
    return {"capabilities": await _statuses(), "routes": served(), "admission": _STATE["admission"].stats()}


@app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
async def metrics(everything: bool = Query(False, alias="all")) -> PlainTextResponse:
    """The hub's metrics and Ray Serve's request metrics; `?all=true` adds Ray's own internals."""
    text = await asyncio.to_thread(_fetch_metrics, current_config().ray.metrics_export_port)
    return PlainTextResponse(text if everything else select_families(text), media_type="text/plain; version=0.0.4")


@app.post("/v1/{capability}/{action}", tags=["capabilities"])
async def extra(capability: str, action: str, request: Request) -> Any:
    """A capability-specific action, e.g. `POST /v1/reason/cases`."""
    capability = _capability(capability)
    method = (await _schema(capability))["extra_routes"].get(action)
    if method is None:
        raise NotFound(f"{capability} has no action {action!r}")
    payload = await _payload(request, capability)
    return await call(get_handle(capability).extra.remote(method, payload), _timeout(capability))


@app.post("/v1/{capability}", tags=["capabilities"])
async def predict(capability: str, request: Request) -> Any:
    """Run one request through a capability: JSON (binary fields base64), a multipart upload, or the
    raw bytes of an image/audio file with the other fields as query parameters.
    `?response=file` returns binary results (e.g. `speak` audio) as the body."""
    capability = _capability(capability)
    board: AdmissionBoard = _STATE["admission"]
    with board.admit(capability):  # refused (503) before the body is read
        timeout_s = client_timeout_s(request.headers, _timeout(capability))
        started = time.perf_counter()
        payload = await _payload(request, capability)
        board.stage(capability, "body", (time.perf_counter() - started) * 1000.0)
        as_file = request.query_params.get("response") == "file"
        started = time.perf_counter()
        result = await call(get_handle(capability).predict_json.remote(payload, as_file, timeout_s), timeout_s)
        board.stage(capability, "handle", (time.perf_counter() - started) * 1000.0)
    if as_file and isinstance(result, tuple | list) and len(result) == 2:
        data, media_type = result
        return Response(content=data, media_type=media_type)
    return result


async def _payload(request: Request, capability: str) -> Any:
    body = await read_body(request, current_config().http.max_body_bytes)
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    # (urlencoded bodies never get here: serving/guard.py answers them 415, a CSRF defence)
    if content_type == "application/json":
        return parse_json(body)
    upload_field = (await _schema(capability)).get("upload_field")
    if upload_field is None:
        raise InvalidInput(f"{capability} accepts application/json only", field="content-type")
    query = {k: v for k, v in request.query_params.items() if k != "response"}
    return await upload_fields(request, body, upload_field, query)


def _fetch_metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:  # noqa: S310
            return reply.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"# ray metrics agent unavailable on 127.0.0.1:{port}: {exc}\n"
