"""HTTP load generator for the hub: one asyncio aiohttp client, closed loop, per concurrency level.

(aiohttp, not httpx: at 400 connections httpx's own pool made the measurement. Against a local
server that answers 503 at once, 400 httpx clients saw 503 p50 8 s / p99 17.5 s at 65 requests/s;
aiohttp 0.2 s / 0.6 s at 930 requests/s on the same 2 cores.)

Prints, per level: OK req/s, p50/p99 of OK answers, counts by status, p99 of 503 answers, the mean
batch size the replica reported (`hub_batch_size` from /metrics) and, at the end, the batching gain
of every level against concurrency 1 measured in the same run.

    # against a running hub
    python bench/http_load.py see --url http://127.0.0.1:8000 --levels 1,8,32 --duration-s 20
    # start a hub as `hub serve` would (temporary HUB_HOME, free port), measure, stop it
    flock /tmp/hub-heavy.lock python bench/http_load.py see --serve --levels 1,32
    # overload burst, then the time until a single request is answered at its normal latency again
    python bench/http_load.py see --serve --levels 1,400 --recovery
    # the clients split over 2 processes (at 400 connections one asyncio process is the bottleneck)
    python bench/http_load.py see --serve --levels 1,400 --recovery --procs 2

503 answers are also timed on the server (bench/refusal_hist.py): in the ingress (`hub_refusal_ms`)
and in Ray's proxy (`serve_http_request_latency_ms{status_code="503"}`), printed below the table.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import proc_cpu  # bench/proc_cpu.py, beside this script
import refusal_hist  # bench/refusal_hist.py

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
# processes `--py-spy` records: the hops of a request that are not the model
PROFILED = ("Ray HTTP proxy", "ingress replica", "replica see", "replica read", "replica reason")
REASON_TEXT = "小区门口的路灯坏了一个多月，晚上出行很不安全，希望尽快维修。"


@dataclass(frozen=True)
class Payload:
    """One request body; raw file uploads go as bytes with their media type, the rest as JSON."""

    content: bytes
    content_type: str
    query: dict = field(default_factory=dict)


def payload_for(capability: str, input_path: Path | None) -> Payload:
    defaults = {
        "see": SHARED / "data/images/bus.jpg",
        "read": SHARED / "data/ocr/rapid_ch_en_num.jpg",
        "listen": SHARED / "data/speech/en-librispeech-1995-1837-0001.wav",
    }
    if capability in defaults:
        path = input_path or defaults[capability]
        media = "audio/wav" if path.suffix == ".wav" else "image/jpeg" if path.suffix == ".jpg" else "image/png"
        return Payload(path.read_bytes(), media)
    if capability == "reason":
        return Payload(json.dumps({"text": REASON_TEXT, "cases_k": 0}).encode(), "application/json")
    if capability == "speak":
        return Payload(json.dumps({"text": "The bus arrives in five minutes."}).encode(), "application/json")
    raise SystemExit(f"no default payload for {capability!r}")


@dataclass
class LevelResult:
    concurrency: int
    duration_s: float
    ok_latencies_s: list[float] = field(default_factory=list)
    refused_latencies_s: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    retry_after: Counter = field(default_factory=Counter)
    mean_batch: float | None = None
    drain_s: float | None = None
    stage_ms: dict = field(default_factory=dict)
    cpu_s: dict = field(default_factory=dict)  # process role -> CPU seconds over the level (--cpu)
    server_503: dict = field(default_factory=dict)  # "ingress"/"proxy" -> 503 latency as the server saw it

    def merge(self, other: LevelResult) -> None:
        """Add the answers of another process's share of the same level."""
        self.ok_latencies_s += other.ok_latencies_s
        self.refused_latencies_s += other.refused_latencies_s
        self.statuses.update(other.statuses)
        self.retry_after.update(other.retry_after)
        self.duration_s = max(self.duration_s, other.duration_s)

    @property
    def ok_per_s(self) -> float:
        return len(self.ok_latencies_s) / self.duration_s


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def session(url: str, headers: dict, connections: int, timeout_s: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(base_url=url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s),
                                 connector=aiohttp.TCPConnector(limit=connections))


async def one(client: aiohttp.ClientSession, path: str, body: Payload, result: LevelResult) -> float | None:
    """Send one request and record its answer; returns the Retry-After of a 503 (seconds), else None."""
    started = time.perf_counter()
    retry_after_s = None
    try:
        async with client.post(path, data=body.content, params=body.query,
                               headers={"content-type": body.content_type}) as reply:
            await reply.read()
            status = str(reply.status)
            if reply.status == 503:
                result.retry_after[reply.headers.get("retry-after", "-")] += 1
                retry_after_s = float(reply.headers.get("retry-after", "0") or 0)
    except (aiohttp.ClientError, TimeoutError) as exc:
        status = type(exc).__name__
    elapsed = time.perf_counter() - started
    result.statuses[status] += 1
    if status == "200":
        result.ok_latencies_s.append(elapsed)
    elif status == "503":
        result.refused_latencies_s.append(elapsed)
    return retry_after_s


async def run_level(url: str, capability: str, body: Payload, concurrency: int, duration_s: float,
                    headers: dict, client_timeout_s: float, honour_retry_after: bool = False,
                    start_at: float | None = None) -> LevelResult:
    result = LevelResult(concurrency, duration_s)
    if start_at is not None:  # time.time() at which every process of a split level begins
        await asyncio.sleep(max(0.0, start_at - time.time()))
    deadline = time.perf_counter() + duration_s

    async with session(url, headers, concurrency + 8, client_timeout_s) as client:
        async def worker() -> None:
            while time.perf_counter() < deadline:
                retry_after_s = await one(client, f"/v1/{capability}", body, result)
                if honour_retry_after and retry_after_s is not None:
                    # a client that does what the 503 asks: back again after Retry-After (or the level's end)
                    await asyncio.sleep(max(0.0, min(retry_after_s, deadline - time.perf_counter())))
                elif result.statuses.get("503") and result.refused_latencies_s[-1] < 0.05:
                    await asyncio.sleep(0.05)  # a refused client backs off briefly, as Retry-After asks

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        # requests still in flight at the deadline count: the level lasted until the last answer
        result.duration_s = time.perf_counter() - started
    return result


def _level_in_process(*args) -> LevelResult:
    """One process's share of a split level (--procs), in a process of its own."""
    return asyncio.run(run_level(*args))


async def run_split_level(pool, procs: int, url: str, capability: str, body: Payload, concurrency: int,
                          duration_s: float, headers: dict, client_timeout_s: float,
                          honour_retry_after: bool) -> LevelResult:
    """`concurrency` clients spread over `procs` processes (each its own event loop and connection
    pool), all starting at the same moment; their answers merged into one result."""
    if procs <= 1 or concurrency < procs:
        return await run_level(url, capability, body, concurrency, duration_s, headers, client_timeout_s,
                               honour_retry_after)
    loop = asyncio.get_running_loop()
    start_at = time.time() + 1.0
    shares = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    parts = await asyncio.gather(*(loop.run_in_executor(
        pool, _level_in_process, url, capability, body, share, duration_s, headers, client_timeout_s,
        honour_retry_after, start_at) for share in shares))
    result = LevelResult(concurrency, 0.0)
    for part in parts:
        result.merge(part)
    return result


def metrics_text(url: str, headers: dict) -> str:
    """The hub's /metrics ("" if it cannot be read); one read serves every parser at one moment."""
    try:
        return httpx.get(f"{url}/metrics", headers=headers, timeout=30).text
    except httpx.HTTPError:
        return ""


async def settled_refusals(url: str, headers: dict, capability: str, limit_s: float = 15.0) -> dict:
    """The 503 histograms once Ray has exported the level's last ones (the replicas push their
    metrics every few seconds): read until two reads 2 s apart agree."""
    previous = None
    waited_s = 0.0
    while True:
        now = refusal_hist.refusal_buckets(await asyncio.to_thread(metrics_text, url, headers), capability)
        if now == previous or waited_s >= limit_s:
            return now
        previous = now
        await asyncio.sleep(2.0)
        waited_s += 2.0


async def recovery_s(url: str, capability: str, body: Payload, headers: dict, normal_s: float,
                     limit_s: float = 120.0) -> float | None:
    """Seconds after a burst until one request is answered OK within 2x the quiet p50."""
    started = time.perf_counter()
    async with session(url, headers, 4, limit_s) as client:
        while time.perf_counter() - started < limit_s:
            probe = LevelResult(1, 1)
            await one(client, f"/v1/{capability}", body, probe)
            if probe.ok_latencies_s and probe.ok_latencies_s[0] <= 2 * normal_s:
                return time.perf_counter() - started
            await asyncio.sleep(0.1)
    return None


_SAMPLE_RE = re.compile(r'^(ray_hub_batch(?:es_total|_items_total|_size_bucket))\{([^}]*)\}\s+([0-9.eE+-]+)', re.M)
_LE_RE = re.compile(r'le="([^"]+)"')


def batch_totals(text: str, capability: str) -> tuple[float, float] | None:
    """(requests, batches) run so far, from /metrics text (None without it). Exact from the
    hub_batch_items / hub_batches counters; for a hub without them (older code), estimated from the
    histogram buckets at their upper bounds (exact for batches of 1 and 2): Ray exports histogram
    sums as bucket midpoints, so _sum is wrong."""
    if not text:
        return None
    items = batches = 0.0
    buckets: dict[float, float] = {}
    for name, labels, value in _SAMPLE_RE.findall(text):
        if f'capability="{capability}"' not in labels:
            continue
        if name == "ray_hub_batch_items_total":
            items += float(value)
        elif name == "ray_hub_batches_total":
            batches += float(value)
        else:
            le = _LE_RE.search(labels)
            bound = float(le.group(1)) if le else float("inf")
            buckets[bound] = buckets.get(bound, 0.0) + float(value)
    if batches:
        return items, batches
    cumulative = sorted(buckets.items())
    previous = 0.0
    for bound, count in cumulative:
        if bound != float("inf"):
            items += (count - previous) * bound
        previous = count
    return items, previous


_STAGE_RE = re.compile(r'^ray_hub_stage_(time_ms_total|ms_count)\{([^}]*)\}\s+([0-9.eE+-]+)', re.M)
_STAGE_TAG = re.compile(r'stage="([^"]+)"')
STAGES = ("body", "handle", "parse", "queue", "batch", "serialise")


def stage_totals(text: str, capability: str) -> dict[str, tuple[float, float]]:
    """stage -> (total ms, count) from /metrics text's stage metrics (empty for a hub without them)."""
    out: dict[str, list[float]] = {}
    for kind, labels, value in _STAGE_RE.findall(text):
        stage = _STAGE_TAG.search(labels)
        if f'capability="{capability}"' not in labels or not stage:
            continue
        slot = out.setdefault(stage.group(1), [0.0, 0.0])
        slot[0 if kind == "time_ms_total" else 1] += float(value)
    return {k: (v[0], v[1]) for k, v in out.items()}


def stage_means(before: dict, after: dict) -> dict[str, float]:
    means = {}
    for stage, (total, count) in after.items():
        total0, count0 = before.get(stage, (0.0, 0.0))
        if count > count0:
            means[stage] = (total - total0) / (count - count0)
    return means


def fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def print_table(capability: str, results: list[LevelResult], label: str) -> None:
    print(f"\n### {capability} ({label})\n")
    print("| concurrency | OK req/s | p50 | p99 | answers | 503 p99 | mean batch | recovery |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        answers = ", ".join(f"{n} × {s}" for s, n in sorted(r.statuses.items()))
        if r.retry_after and "503" in r.statuses:
            answers += f" (Retry-After {dict(r.retry_after)})"
        batch = f"{r.mean_batch:.2f}" if r.mean_batch is not None else "-"
        print(f"| {r.concurrency} | {r.ok_per_s:.2f} | {fmt_s(pct(r.ok_latencies_s, 0.5))} | "
              f"{fmt_s(pct(r.ok_latencies_s, 0.99))} | {answers} | {fmt_s(pct(r.refused_latencies_s, 0.99))} | "
              f"{batch} | {fmt_s(r.drain_s)} |")
    if any(r.stage_ms for r in results):
        print(f"\nmean time per request in each stage, ms ({capability}; body/handle at the ingress, "
              "the rest in the replica; batch = decode + inference of the whole batch)\n")
        print("| concurrency | " + " | ".join(STAGES) + " |")
        print("|---" * (len(STAGES) + 1) + "|")
        for r in results:
            print(f"| {r.concurrency} | " + " | ".join(f"{r.stage_ms[s]:.0f}" if s in r.stage_ms else "-"
                                                    for s in STAGES) + " |")
    if any(r.server_503 for r in results):
        print(f"\n503 answers as the server timed them ({capability}; count: p50, p99, bucket upper bounds; "
              "ingress = arrival at the ingress replica to answer sent, proxy = Ray's HTTP proxy, "
              "arrival to answer, every 503 whoever refused it)\n")
        print("| concurrency | client 503 p50 / p99 | ingress | proxy |")
        print("|---|---|---|---|")
        for r in results:
            if r.server_503:
                print(f"| {r.concurrency} | {fmt_s(pct(r.refused_latencies_s, 0.5))} / "
                      f"{fmt_s(pct(r.refused_latencies_s, 0.99))} | {r.server_503['ingress']} | "
                      f"{r.server_503['proxy']} |")
    proc_cpu.print_split({f"c={r.concurrency}": (r.cpu_s, len(r.ok_latencies_s)) for r in results if r.cpu_s})
    base = next((r for r in results if r.concurrency == 1), None)
    if base and base.ok_per_s > 0:
        gains = ", ".join(f"{r.concurrency} vs 1: {r.ok_per_s / base.ok_per_s:.2f}×" for r in results
                          if r.concurrency != 1)
        print(f"\nbatching gain ({capability}, OK req/s, same run): {gains}")
    sys.stdout.flush()


def print_profile(path: Path) -> None:
    if not path.is_file():
        print(f"# py-spy wrote nothing to {path}", file=sys.stderr)
        return
    print(f"\n{path.stem}: functions by inclusive share of py-spy samples (non-idle threads)\n")
    for name, share in proc_cpu.summarise_profile(path, top=25):
        print(f"    {100 * share:5.1f} %  {name}")
    sys.stdout.flush()


async def measure(args, capability: str, url: str, headers: dict) -> list[LevelResult]:
    if args.procs > 1:
        context = multiprocessing.get_context("spawn")  # not fork: this process runs an event loop
        with concurrent.futures.ProcessPoolExecutor(args.procs, mp_context=context) as pool:
            return await _measure(args, capability, url, headers, pool)
    return await _measure(args, capability, url, headers, None)


async def _measure(args, capability: str, url: str, headers: dict, pool) -> list[LevelResult]:
    body = payload_for(capability, args.input)
    results = []
    normal_s = None
    if args.cpu and args.idle_s > 0:  # what the hub costs with no requests at all
        idle_before = proc_cpu.snapshot()
        await asyncio.sleep(args.idle_s)
        proc_cpu.print_idle(proc_cpu.cpu_by_role(idle_before, proc_cpu.snapshot()))
    # warm-up: the first requests load lazy parts (tokenisers, kernels); not measured
    await run_level(url, capability, body, 2, args.warmup_s, headers, args.client_timeout_s)
    for level in args.levels:
        text = metrics_text(url, headers)
        before, stages_before = batch_totals(text, capability), stage_totals(text, capability)
        refusals_before = refusal_hist.refusal_buckets(text, capability)
        cpu_before = proc_cpu.snapshot() if args.cpu else None
        profilers = proc_cpu.start_profilers(args.py_spy, PROFILED, args.duration_s, f"{capability}-c{level}") \
            if args.py_spy and level in args.py_spy_levels else []
        result = await run_split_level(pool, args.procs, url, capability, body, level, args.duration_s, headers,
                                       args.client_timeout_s, args.honour_retry_after)
        if cpu_before is not None:
            result.cpu_s = proc_cpu.cpu_by_role(cpu_before, proc_cpu.snapshot())
        for profiler in profilers:
            profiler.wait()
            print_profile(Path(profiler.args[-1]))
        if args.recovery and normal_s is not None and level > 1:
            result.drain_s = await recovery_s(url, capability, body, headers, normal_s)
        else:
            await asyncio.sleep(1.0)  # metrics are exported about once a second
        if result.statuses.get("503"):
            refusals_after = await settled_refusals(url, headers, capability)
            result.server_503 = {side: refusal_hist.describe(refusals_before[side], refusals_after[side])
                                 for side in ("ingress", "proxy")}
        text = metrics_text(url, headers)
        after = batch_totals(text, capability)
        result.stage_ms = stage_means(stages_before, stage_totals(text, capability))
        if before and after and after[1] > before[1]:
            result.mean_batch = (after[0] - before[0]) / (after[1] - before[1])
        if level == 1:
            normal_s = pct(result.ok_latencies_s, 0.5)
        results.append(result)
        print(f"# {capability} c={level}: {result.ok_per_s:.2f} OK/s {dict(result.statuses)}", file=sys.stderr)
    return results


def huge_jpeg(megapixels: float) -> bytes:
    """A photo-sized JPEG of `megapixels`: smooth gradients with a little noise, so that it stays
    under the hub's body limit (20 MiB) like a real 49 MP camera photo (~10-15 MiB) does."""
    import io

    import numpy as np
    from PIL import Image

    side = int((megapixels * 1e6) ** 0.5)
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    rgb = np.stack([np.add.outer(ramp, ramp) / 2, np.add.outer(ramp, 255 - ramp) / 2,
                    np.add.outer(255 - ramp, ramp) / 2], axis=-1)
    rgb += np.random.default_rng(0).normal(0, 4, (1, side, 1)).astype(np.float32)
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def replica_rss_mib(url: str, headers: dict, capability: str) -> float | None:
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


async def memory_run(url: str, headers: dict, capability: str, count: int, megapixels: float) -> None:
    """RSS of the capability's replica before, during (peak) and after `count` huge images at once."""
    body = Payload(huge_jpeg(megapixels), "image/jpeg")
    before = replica_rss_mib(url, headers, capability)
    result = LevelResult(count, 1)
    peak = before or 0.0

    async def sample() -> None:
        nonlocal peak
        while True:
            rss = await asyncio.to_thread(replica_rss_mib, url, headers, capability)
            peak = max(peak, rss or 0.0)
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    async with session(url, headers, count + 4, 600) as client:
        await asyncio.gather(*(one(client, f"/v1/{capability}", body, result) for _ in range(count)))
    sampler.cancel()
    await asyncio.sleep(5.0)
    after = replica_rss_mib(url, headers, capability)
    print(f"\n### {capability}: {count} concurrent {megapixels:.0f} MP JPEGs ({len(body.content) / 2**20:.1f} MiB each)\n")
    print("| replica RSS before | peak during | 5 s after | answers |")
    print("|---|---|---|---|")
    answers = ", ".join(f"{n} × {s}" for s, n in sorted(result.statuses.items()))
    print(f"| {before:.0f} MiB | {peak:.0f} MiB | {after:.0f} MiB | {answers} |")
    sys.stdout.flush()


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


def start_hub(args) -> tuple[subprocess.Popen, str, Path]:
    """`hub serve` with the repo's serving config, on a free port, under a temporary HUB_HOME."""
    home = Path(args.home or tempfile.mkdtemp(prefix="hub-load-"))
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    # PYTHONPATH first: `--repo` may be another checkout (e.g. a worktree of the old commit) run
    # with this checkout's virtual environment
    env.update(HUB_HOME=str(home), HUB_SHARED_DIR=str(SHARED), PYTHONPATH=str(args.repo))
    config = Path(args.config or (args.repo / "configs/serving.yaml"))
    log = open(home / "serve.log", "w")  # noqa: SIM115 - lives as long as the server
    cmd = [sys.executable, "-m", "cli.main", "serve", "--config", str(config), "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=args.repo, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.start_timeout_s
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
    raise SystemExit(f"hub not ready after {args.start_timeout_s} s; see {home / 'serve.log'}")


def stop_hub(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # `hub serve` shuts Ray down on SIGINT
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capability", nargs="+", help="see, read, reason, listen or speak (several: one after another)")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--levels", default="1,8,32", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--client-timeout-s", type=float, default=120.0)
    parser.add_argument("--input", type=Path, help="file to send (default: a sample from ../shared/data)")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--recovery", action="store_true", help="after levels > 1, time until latency is normal")
    parser.add_argument("--honour-retry-after", action="store_true",
                        help="a refused client waits Retry-After before its next request (default: 50 ms)")
    parser.add_argument("--procs", type=int, default=1,
                        help="split each level's clients over this many processes (a level of 400 on one event "
                             "loop measures the client)")
    parser.add_argument("--serve", action="store_true", help="start `hub serve` for the run, stop it afterwards")
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose `hub serve` to start")
    parser.add_argument("--config", type=Path, default=None, help="serving YAML (default: <repo>/configs/serving.yaml)")
    parser.add_argument("--home", default=None, help="HUB_HOME for --serve (default: a new temporary folder)")
    parser.add_argument("--start-timeout-s", type=float, default=600.0)
    parser.add_argument("--label", default="", help="table heading, e.g. 'before' or a commit")
    parser.add_argument("--huge-images", type=int, default=0,
                        help="instead of levels: send this many huge images at once, report replica RSS")
    parser.add_argument("--megapixels", type=float, default=49.0)
    parser.add_argument("--floor", action="store_true",
                        help="instead of a hub: a local server that refuses everything at once (the client's floor)")
    parser.add_argument("--cpu", action="store_true",
                        help="CPU ms per OK request of every process (proxy, ingress, replicas, this client, Ray)")
    parser.add_argument("--idle-s", type=float, default=10.0,
                        help="with --cpu: first measure each process's CPU this long with no requests")
    parser.add_argument("--py-spy", type=Path, default=None,
                        help="folder: record py-spy collapsed stacks of the proxy, ingress and replica")
    parser.add_argument("--py-spy-levels", default="32", type=lambda s: [int(x) for x in s.split(",")])
    args = parser.parse_args(argv)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    proc = None
    url = args.url
    if args.floor:
        floor, url = start_floor_server()
        args.recovery = False  # nothing ever answers 200
        try:
            print_table(args.capability[0], asyncio.run(measure(args, args.capability[0], url, headers)),
                        "floor: a server that refuses at once")
        finally:
            floor.terminate()
        return
    if args.serve:
        proc, url, home = start_hub(args)
        print(f"# hub at {url}, HUB_HOME={home}", file=sys.stderr)
    try:
        for capability in args.capability:
            if args.huge_images:
                asyncio.run(memory_run(url, headers, capability, args.huge_images, args.megapixels))
                continue
            results = asyncio.run(measure(args, capability, url, headers))
            print_table(capability, results, args.label or url)
    finally:
        if proc is not None:
            stop_hub(proc)


if __name__ == "__main__":
    main()
