"""What the bench scripts read from a running hub's /metrics: batch sizes, time per stage, 503 latency."""

from __future__ import annotations

import asyncio
import re

import httpx
import refusal_hist  # bench/refusal_hist.py, beside this script


def metrics_text(url: str, headers: dict) -> str:
    """The hub's /metrics ("" if it cannot be read); one read serves every parser at one moment."""
    try:
        return httpx.get(f"{url}/metrics", headers=headers, timeout=30).text
    except httpx.HTTPError:
        return ""


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
