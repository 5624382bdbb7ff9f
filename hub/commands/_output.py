"""What the CLI prints: its own results on stdout, and library log lines only with `--verbose`.

Ray sets its loggers to INFO with their own stderr handlers when it is imported, so `quiet()` is
applied again after the heavy imports of a command (`quiet(verbose, after_import=True)`).
"""

from __future__ import annotations

import logging
import time

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
    """Library loggers at WARNING unless --verbose (call again after importing ray)."""
    level = logging.INFO if _state["verbose"] else logging.WARNING
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(level)


class Steps:
    """Step messages with the time since the first one: `  12.3 s  starting Ray (local)`."""

    def __init__(self, log: logging.Logger | None = None) -> None:
        self.started = time.perf_counter()
        self.log = log

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def __call__(self, message: str) -> None:
        typer.echo(f"{self.elapsed_s():6.1f} s  {message}")
        if self.log is not None:
            self.log.info("%s", message)
