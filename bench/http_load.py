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
import multiprocessing
import sys
from pathlib import Path

import proc_cpu  # bench/proc_cpu.py and the modules below are beside this script
import refusal_hist
from hub_metrics import STAGES, batch_totals, metrics_text, settled_refusals, stage_means, stage_totals
from hub_process import replica_rss_mib, start_floor_server, start_hub, stop_hub
from load_client import (
    LevelResult,
    Payload,
    one,
    payload_for,
    pct,
    recovery_s,
    run_level,
    run_split_level,
    session,
)

REPO = Path(__file__).resolve().parents[1]
# processes `--py-spy` records: the hops of a request that are not the model
PROFILED = ("Ray HTTP proxy", "ingress replica", "replica see", "replica read", "replica reason")


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
        refused = [r.concurrency for r in results if r.statuses.get("503")]
        if refused:
            # refused clients ask again (after 50 ms, or Retry-After) and take CPU from the admitted ones
            print(f"(levels {refused} were refused in part: their rate measures admission as well as batching)")
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


async def memory_run(url: str, headers: dict, capability: str, count: int, megapixels: float) -> None:
    """RSS of the capability's replica before, during (peak) and after `count` huge images at once."""
    body = Payload(huge_jpeg(megapixels), "image/jpeg")
    before = replica_rss_mib(capability)
    result = LevelResult(count, 1)
    peak = before or 0.0

    async def sample() -> None:
        nonlocal peak
        while True:
            rss = await asyncio.to_thread(replica_rss_mib, capability)
            peak = max(peak, rss or 0.0)
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    async with session(url, headers, count + 4, 600) as client:
        await asyncio.gather(*(one(client, f"/v1/{capability}", body, result) for _ in range(count)))
    sampler.cancel()
    await asyncio.sleep(5.0)
    after = replica_rss_mib(capability)
    print(f"\n### {capability}: {count} concurrent {megapixels:.0f} MP JPEGs ({len(body.content) / 2**20:.1f} MiB each)\n")
    print("| replica RSS before | peak during | 5 s after | answers |")
    print("|---|---|---|---|")
    answers = ", ".join(f"{n} × {s}" for s, n in sorted(result.statuses.items()))
    print(f"| {before:.0f} MiB | {peak:.0f} MiB | {after:.0f} MiB | {answers} |")
    sys.stdout.flush()


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
        proc, url, home = start_hub(args.repo, args.config, args.home, args.start_timeout_s)
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
