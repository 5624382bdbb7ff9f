"""Processes the bench scripts start or watch: `hub serve` under a temporary HUB_HOME, a server that
refuses everything (the client's floor), and a replica's resident memory."""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

SHARED = Path(__file__).resolve().parents[2] / "shared"


async def _refuse_everything(scope, receive, send) -> None:
    """ASGI app of `--floor`: reads the body, answers 503 + Retry-After at once."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"retry-after", b"2"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


def start_floor_server() -> tuple[multiprocessing.Process, str]:
    """A uvicorn server (what Ray's proxy runs on) that refuses every request at once: the 503
    latency this client and machine give without any hub work."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(_refuse_everything, host="127.0.0.1", port=port, log_level="error", backlog=4096)
    proc = multiprocessing.Process(target=uvicorn.Server(config).run, daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url, timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the floor server did not start")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_hub(repo: Path, config: Path | None = None, home: str | None = None,
              start_timeout_s: float = 600.0) -> tuple[subprocess.Popen, str, Path]:
    """`hub serve` of the checkout `repo` with its serving config (or `config`), on a free port,
    under `home` or a new temporary HUB_HOME."""
    home = Path(home or tempfile.mkdtemp(prefix="hub-load-"))
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    # PYTHONPATH first: `--repo` may be another checkout (e.g. a worktree of the old commit) run
    # with this checkout's virtual environment
    env.update(HUB_HOME=str(home), HUB_SHARED_DIR=str(SHARED), PYTHONPATH=str(repo))
    config = Path(config or (repo / "configs/serving.yaml"))
    log = open(home / "serve.log", "w")  # noqa: SIM115 - lives as long as the server
    cmd = [sys.executable, "-m", "cli.main", "serve", "--config", str(config), "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + start_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"hub serve exited with {proc.returncode}; see {home / 'serve.log'}")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return proc, url, home
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    stop_hub(proc)
    raise SystemExit(f"hub not ready after {start_timeout_s} s; see {home / 'serve.log'}")


def stop_hub(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # `hub serve` shuts Ray down on SIGINT
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def replica_rss_mib(capability: str) -> float | None:
    """RSS of the capability's replica process on this machine (Ray titles it ServeReplica:...)."""
    import psutil

    title = f"ServeReplica:hub:capability-{capability}"
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if title in " ".join(proc.info["cmdline"] or ()):
                return proc.memory_info().rss / 2**20
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None
