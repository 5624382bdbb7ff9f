"""Server-side latency of 503 answers, from the hub's /metrics (bench/http_load.py reads it before
and after each level).

Two histograms, both from the moment the server holds the request, so the load generator's own
time (400 connections on the same 2 cores) is not in them:
- `ingress`: the hub's `hub_refusal_ms{capability}`, arrival at the ingress replica to the last
  byte of the 503 handed back (serving/admission.py, RouteDeadline);
- `proxy`: Ray Serve's `serve_http_request_latency_ms{status_code="503"}`, measured by Ray's HTTP
  proxy from the request's arrival there to its answer, whoever refused it (the ingress's admission
  or the proxy's own queue bound). Not in it: time in the kernel's accept queue and in uvicorn's
  HTTP parsing before the proxy's handler runs.

A quantile is read as the upper bound of the bucket it falls in (`<= 100 ms`).
"""

from __future__ import annotations

import re

# label values may hold braces (Serve's route="/v1/{capability}"), so a label set is read value by value
_BUCKET = re.compile(r'^(ray_hub_refusal_ms_bucket|ray_serve_http_request_latency_ms_bucket)'
                     r'\{((?:[^"}]|"(?:[^"\\]|\\.)*")*)\}\s+([0-9.eE+-]+)', re.M)
_LE = re.compile(r'le="([^"]+)"')


def refusal_buckets(metrics_text: str, capability: str) -> dict[str, dict[float, float]]:
    """{"ingress"|"proxy": {upper bound ms: cumulative count}} of 503 answers so far."""
    out: dict[str, dict[float, float]] = {"ingress": {}, "proxy": {}}
    for name, labels, value in _BUCKET.findall(metrics_text):
        if name == "ray_hub_refusal_ms_bucket":
            if f'capability="{capability}"' not in labels:
                continue
            side = "ingress"
        elif 'status_code="503"' in labels:
            side = "proxy"
        else:
            continue
        le = _LE.search(labels)
        bound = float(le.group(1)) if le else float("inf")
        out[side][bound] = out[side].get(bound, 0.0) + float(value)
    return out


def quantiles(before: dict[float, float], after: dict[float, float], qs=(0.5, 0.99)) -> tuple[int, list]:
    """(count, [upper bound of the bucket holding each quantile]) of the observations in between."""
    delta = sorted((bound, count - before.get(bound, 0.0)) for bound, count in after.items())
    total = delta[-1][1] if delta else 0.0
    if total <= 0:
        return 0, [None for _ in qs]
    bounds = []
    for q in qs:
        bounds.append(next(bound for bound, cumulative in delta if cumulative >= q * total))
    return int(total), bounds


def describe(before: dict, after: dict) -> str:
    """'N: p50 <= a ms, p99 <= b ms' (or '-')."""
    count, (p50, p99) = quantiles(before, after)
    if not count:
        return "-"

    def fmt(bound: float) -> str:
        return "> last bucket" if bound == float("inf") else f"<= {bound:g} ms"

    return f"{count}: p50 {fmt(p50)}, p99 {fmt(p99)}"
