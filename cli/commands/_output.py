"""What the CLI prints: its own results on stdout, and library log lines only with `--verbose`.

Ray and MLflow give their loggers their own stderr handlers when they are imported, so a command
calls `quiet()` again after its heavy imports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import typer

# Libraries whose INFO lines are about their own machinery, not the user's request.
NOISY_LOGGERS = ("ray", "ray.serve", "ray.data", "ray.train", "mlflow", "alembic", "filelock", "httpx",
                 "urllib3", "ultralytics", "faster_whisper", "onnxruntime", "faiss")
_state = {"verbose": False}


def set_verbose(verbose: bool) -> None:
    _state["verbose"] = verbose
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet()


def verbose() -> bool:
    return _state["verbose"]


def quiet() -> None:
    """Console handlers of the library loggers (and the root's) at WARNING unless --verbose.

    Handler levels, not logger levels: `hub serve` also writes every INFO line to its log file."""
    level = logging.INFO if _state["verbose"] else logging.WARNING
    for name in ("", *NOISY_LOGGERS):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(level)


class Steps:
    """Step messages with the time since the first one: `  12.3 s  starting Ray (local)`."""

    def __init__(self, log: logging.Logger | None = None, before: Callable[[], None] | None = None) -> None:
        self.started = time.perf_counter()
        self.log = log
        self.before = before

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def __call__(self, message: str) -> None:
        if self.before is not None:
            self.before()
        typer.echo(f"{self.elapsed_s():6.1f} s  {message}")
        if self.log is not None:
            self.log.info("%s", message)
