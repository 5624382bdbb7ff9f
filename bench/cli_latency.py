"""How long `hub see IMAGE` takes against a running hub, and where the time goes (issue 17).

Three things are timed in the same run, each `--runs` times (medians printed):
- `python -c pass`: the interpreter's own start;
- the same request sent from this process (urllib, JSON with base64, as the CLI sends it): the hub's share;
- `hub see IMAGE` as a user types it (a new process each time): everything.
The ratio of the last two is the CLI's overhead over the bare request.

    hub serve --detach && python bench/cli_latency.py ../shared/data/images/bus.jpg --runs 10
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HUB = Path(sys.executable).with_name("hub")


def _median_s(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _running_url() -> str:
    from cli.commands._client import running_hub

    hub = running_hub()
    if hub is None:
        sys.exit("no running hub: start one with `hub serve --detach`, or pass --url")
    return hub.url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", type=Path)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--url", default=None, help="a running hub (default: the one `hub serve` started)")
    args = parser.parse_args()
    url = args.url or _running_url()
    body = json.dumps({"image": base64.b64encode(args.image.read_bytes()).decode(), "min_score": 0.25}).encode()

    def direct() -> None:
        request = urllib.request.Request(url.rstrip("/") + "/v1/see", data=body,
                                         headers={"content-type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=60) as reply:  # noqa: S310 (a local hub)
            reply.read()

    def cli() -> None:
        subprocess.run([str(HUB), "see", str(args.image), "--url", url], check=True, capture_output=True)

    direct()  # warm: the first request after a start pays for the replica's first batch
    python_s = _median_s(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), args.runs)
    direct_s = _median_s(direct, args.runs)
    cli_s = _median_s(cli, args.runs)
    print(f"python start      {python_s * 1000:7.0f} ms")
    print(f"request (direct)  {direct_s * 1000:7.0f} ms   the hub's share")
    print(f"hub see (CLI)     {cli_s * 1000:7.0f} ms   {cli_s / direct_s:.2f}x the direct request, "
          f"CLI overhead {(cli_s - direct_s) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
