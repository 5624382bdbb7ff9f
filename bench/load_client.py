"""The closed-loop load of bench/http_load.py: N aiohttp clients sending one capability's request back to
back for a level's duration, in one process or split over several, and what they got back."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

SHARED = Path(__file__).resolve().parents[2] / "shared"
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
