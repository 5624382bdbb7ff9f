"""`hub.settings`: which environment variables set which field, and the embedded defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hub.settings import get_settings, reset_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for name in ("HUB_HOME", "HUB_TRACKING_URI", "HUB_REGISTRY_URI", "HUB_DEVICE", "CI"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    yield
    reset_settings()


@pytest.mark.parametrize(("env", "field", "expected"), [
    ({"HUB_HOME": "/srv/hub"}, "home", Path("/srv/hub")),
    ({"hub_home": "/srv/lower"}, "home", Path("/srv/lower")),  # names in any case, as before
    ({"HUB_HOME": "/srv/hub"}, "tracking_uri", "sqlite:////srv/hub/mlflow.db"),
    ({"HUB_TRACKING_URI": "http://mlflow:5000"}, "registry_uri", "http://mlflow:5000"),
    ({"HUB_DEVICE": "cuda:1"}, "device", "cuda:1"),
    ({"CI": "true"}, "ci", True),
    ({"HUB_CI": "true"}, "ci", False),  # CI comes from CI, not a HUB_ variable
    ({"HUB_SOMETHING_ELSE": "x"}, "device", "auto"),  # unknown HUB_ names are ignored
])
def test_environment_sets_fields(monkeypatch, env, field, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert getattr(get_settings(), field) == expected


def test_default_home_is_dot_hub_in_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    settings = get_settings()
    assert settings.home == tmp_path.resolve() / ".hub"
    assert settings.tracking_uri == f"sqlite:///{tmp_path.resolve() / '.hub' / 'mlflow.db'}"


def test_a_bad_value_is_refused(monkeypatch):
    monkeypatch.setenv("CI", "perhaps")
    with pytest.raises(ValueError, match="ci"):
        get_settings()


@pytest.mark.parametrize("name", ["RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD", "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP"])
def test_serve_loop_settings_reach_workers_but_not_this_process(monkeypatch, tmp_path, name):
    """Replicas run handle routers on their own loop; this process may call a handle from plain
    synchronous code (serve.run's handle in a test or script), which needs Ray's default."""
    from hub.settings import apply_runtime_env

    monkeypatch.setenv("HUB_HOME", str(tmp_path / "hub"))
    monkeypatch.delenv(name, raising=False)
    reset_settings()
    settings = apply_runtime_env()
    assert settings.env_for_workers()[name] == "0"
    assert name not in os.environ
