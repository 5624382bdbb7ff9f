"""`see`'s service time at a batch size: how long the detector takes to answer N requests at once,
in-process (no HTTP, no Ray), against one request at a time measured in the same run.

Issue 11 sets `see`'s p99 at 32 concurrent HTTP clients against twice this time at batch size 32:
run this, then `bench/http_load.py see --levels 1,32`, on the same quiet machine. The replica batches
at most `max_batch_size` requests (16 in configs/serving.yaml), so a batch of 32 is also timed as
that many calls one after another.

    flock /tmp/hub-heavy.lock .venv/bin/python bench/see_service_time.py --batch 32 --max-batch-size 16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: the repo's packages, no install needed


def timed(call, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> None:
    from models.detection.capability import Detector, SeeRequest

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-batch-size", type=int, default=16, help="the replica's batch.max_batch_size")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--image", type=Path, default=None, help="default: <shared>/data/images/bus.jpg")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    args = parser.parse_args(argv)

    detector = Detector()
    detector.load(_default_artifact(args.shared), "cpu")
    image = (args.image or args.shared / "data/images/bus.jpg").read_bytes()

    def answer(n: int, per_call: int) -> None:
        for start in range(0, n, per_call):
            replies = detector.predict_batch([SeeRequest(image=image) for _ in range(min(per_call, n - start))])
            assert all(not isinstance(r, Exception) for r in replies), replies

    answer(4, 4)  # warm-up: sessions, thread pools, allocator
    one = timed(lambda: answer(1, 1), args.rounds * 4)
    rows = [("1 request", 1, one)]
    rows.append((f"{args.batch} requests, one call", args.batch, timed(lambda: answer(args.batch, args.batch), args.rounds)))
    if args.max_batch_size < args.batch:
        rows.append((f"{args.batch} requests, calls of {args.max_batch_size}", args.batch,
                     timed(lambda: answer(args.batch, args.max_batch_size), args.rounds)))
    print("\n| batch | median | best | per request (median) | per request vs 1 request |")
    print("|---|---|---|---|---|")
    single = statistics.median(one)
    for label, n, times in rows:
        median = statistics.median(times)
        print(f"| {label} | {median:.2f} s | {min(times):.2f} s | {median / n * 1000:.0f} ms | "
              f"{single / (median / n):.2f}x |")
    print(f"\n2 x the service time at batch size {args.batch} (median of the replica's way, "
          f"calls of {min(args.max_batch_size, args.batch)}): {2 * statistics.median(rows[-1][2]):.2f} s")


def _default_artifact(shared: Path) -> Path:
    from models.detection.artifact import prepare_default

    out = Path(tempfile.mkdtemp(prefix="see-svc-"))
    prepare_default(shared, out)
    return out


if __name__ == "__main__":
    main()
