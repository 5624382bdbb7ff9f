"""N live-paced cameras through the stream manager's own code path, one table row per camera count.

Each camera is the `road-east` camera of `configs/streams.yaml` (hard-shoulder parking + spill rules)
reading a looped video file, paced at the file's own frame rate like a live camera. The cameras go
through `serving.streams.StreamManagerCore`, exactly what the `streams` deployment runs:
FrameSource -> CameraWorker -> DynamicBatcher -> Detector -> ByteTrack -> rules -> EventStore.
Only the registry is left out: the detector artifact is prepared from ../shared directly and the
cameras name a pinned version, so no alias is polled.

    .venv/bin/python bench/streams_e2e.py --cameras 2,8                  # CPU, 720p road-cars.mp4
    .venv/bin/python bench/streams_e2e.py --sweep                         # find the knee
    .venv/bin/python bench/streams_e2e.py --sweep --oversubscribe 2       # and run at 2x the knee
    python bench/streams_e2e.py --device cuda --resize 1920x1080 --analysis-fps 10 --sweep
    python bench/streams_e2e.py --device cuda --cameras 100 --processes 8   # 8 managers, 8 processes

Per row: analysed frames/s (total, per camera mean and min), cameras at >= 95 % of their target,
frames decoded / skipped (replaced in the source's slot before analysis) / dropped (by the
batcher's per-camera bound), p50/p99 latency from a frame's decode to its result (sampled from
the public stream stats), CPU cores busy (this process and its children), GPU busy (n/a on CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere

HOLD_FRACTION = 0.95  # a camera "holds" its target at >= 95 % of analysis_fps
# The pipeline as it was before issue 10, expressed as stream-manager options.
LEGACY = {"decode": {"max_side_px": None, "threads": 0, "skip_frames": False, "backend": "cpu"},
          "capacity": {"admission": "accept", "interval_s": 60.0}}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", default="2,8", help="comma-separated camera counts (ignored with --sweep)")
    p.add_argument("--sweep", action="store_true", help="double N from 1 until the target breaks, then bisect")
    p.add_argument("--max-cameras", type=int, default=64, help="upper bound of the sweep")
    p.add_argument("--oversubscribe", type=float, default=0.0, help="also run at this multiple of the knee")
    p.add_argument("--analysis-fps", type=float, default=5.0)
    p.add_argument("--video", type=Path, default=None, help="default: ../shared/data/video/road-cars.mp4")
    p.add_argument("--resize", default=None, help="WxH: re-encode the video to this size first (e.g. 1920x1080)")
    p.add_argument("--gop", type=int, default=None, help="re-encode with this key-frame interval (frames)")
    p.add_argument("--warmup-s", type=float, default=15.0)
    p.add_argument("--measure-s", type=float, default=20.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--option", action="append", default=[],
                   help="extra StreamsConfig option as key=JSON, e.g. decode='{\"width\": 0}'")
    p.add_argument("--compare", action="store_true",
                   help="before each row, run the same N with the pre-issue-10 decoding (full-size RGB, FFmpeg's "
                        "default threads, no frame skipping, no rate governor): a baseline under the same load")
    p.add_argument("--decode-only", action="store_true",
                   help="only the cameras' FrameSources (decode, sample, convert), before vs now: CPU per camera")
    p.add_argument("--processes", type=int, default=1,
                   help="split the cameras over this many stream managers, each in a process of its own (as "
                        "`streams.shards` places them on Ray actors), measured over the same window")
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def make_video(src: Path, resize: str | None, gop: int | None, work: Path) -> Path:
    """The input file: `src` itself, or re-encoded to `resize` / key-frame interval `gop` (H.264)."""
    if not resize and not gop:
        return src
    out = work / f"{src.stem}-{resize or 'native'}-g{gop or 'native'}.mp4"
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(src), "-an", "-c:v", "libx264", "-preset", "veryfast",
           "-crf", "23", "-pix_fmt", "yuv420p"]
    if resize:
        w, h = resize.lower().split("x")
        cmd += ["-vf", f"scale={w}:{h}"]
    if gop:
        cmd += ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"]
    subprocess.run([*cmd, str(out)], check=True)
    return out


def camera_template() -> dict:
    from hub.yamlconfig import read_yaml_mapping

    cameras = read_yaml_mapping(REPO / "configs/streams.yaml", "streams config")["cameras"]
    return next(c for c in cameras if c["camera_id"] == "road-east")


class Bench:
    def __init__(self, args, video: Path, work: Path, artifact: Path | None = None) -> None:
        from gpu.device import pick_device
        from models.detection import Detector, prepare_default

        self.args, self.video, self.work = args, video, work
        self.device = pick_device(args.device)
        from hub.settings import get_settings

        self.artifact = artifact or work / "artifact"
        if artifact is None:  # a --processes child reuses its parent's
            prepare_default(get_settings().shared_dir, self.artifact)
        self.detector_cls = Detector
        self.template = camera_template()
        self.options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}

    def factory(self, ref: str):
        """A fresh detector per manager: closing a manager closes the detectors it loaded."""
        detector = self.detector_cls(rect=True)
        detector.load(self.artifact, self.device)
        return detector, {"name": "yolov8n-coco", "version": "1", "alias": None}

    def run(self, n: int, legacy: bool = False) -> dict:
        """One table row: N cameras in one stream manager, or spread over `--processes` managers in
        processes of their own (what `streams.shards` does through Ray actors), measured together."""
        procs = max(1, min(self.args.processes, n))
        parts = [self.measure(n, legacy)] if procs == 1 else self._in_processes(n, legacy, procs)
        out = summarise(n, self.args.analysis_fps, parts)
        return out | {"config": "before" if legacy else "now", "processes": procs}

    def measure(self, n: int, legacy: bool = False, *, first: int = 0, barrier=None) -> dict:
        """Cameras `first`..`first + n - 1` in one StreamManagerCore of this process: warm up, wait at
        `barrier` (the other processes' managers), then sample. Raw counters, merged by `summarise`."""
        import psutil

        from serving.streams import StreamManagerCore

        data = Path(tempfile.mkdtemp(prefix=f"streams-{first}-{n}-", dir=self.work))
        # A pinned version: the manager's alias following (a registry poll every few seconds) stays out.
        options = {"device": self.device, "persist_cameras": False, "file_roots": [str(self.video.parent)],
                   "model": "models:/yolov8n-coco/1",
                   "batch": {"max_batch_size": 16 if self.device == "cpu" else 64}, **self.options,
                   **(LEGACY if legacy else {})}
        core = StreamManagerCore(options, detector_factory=self.factory, data_dir=data)
        proc = psutil.Process()
        try:
            for c in range(first, first + n):
                core.add_stream({**self.template, "camera_id": f"cam-{c:03d}", "url": str(self.video),
                                 "analysis_fps": self.args.analysis_fps, "webhooks": []})
            time.sleep(self.args.warmup_s)
            if barrier is not None:
                barrier.wait(timeout=600)
            before, cpu0, t0 = _by_camera(core.list_streams()), _cpu_s(proc), time.monotonic()
            with GpuBusy(enabled=barrier is None) as gpu:
                latencies = _sample_latencies(core, self.args.measure_s)
            after, cpu1, t1 = _by_camera(core.list_streams()), _cpu_s(proc), time.monotonic()
            status = core.status()
            errors = [s["last_error"] for s in after.values() if s["last_error"]]
            if errors:
                print(f"  camera errors: {sorted(set(errors))[:3]}", file=sys.stderr)
        finally:
            core.close()
        return {"before": before, "after": after, "seconds": t1 - t0, "cpu_s": cpu1 - cpu0, "latencies": latencies,
                "batchers": {f"{first}/{k}": v for k, v in status["batchers"].items()}, "gpu_busy": gpu.result()}

    def _in_processes(self, n: int, legacy: bool, procs: int) -> list[dict]:
        """`procs` spawned processes (CUDA needs spawn), cameras split evenly; all measure at once."""
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        barrier, results = ctx.Barrier(procs + 1), ctx.Queue()
        shares = [n // procs + (i < n % procs) for i in range(procs)]
        starts = [sum(shares[:i]) for i in range(procs)]
        children = [ctx.Process(target=_child, args=(self.args, self.video, self.work, self.artifact, share, legacy,
                                                     first, barrier, results), daemon=True)
                    for share, first in zip(shares, starts, strict=True)]
        for child in children:
            child.start()
        barrier.wait(timeout=600)
        with GpuBusy() as gpu:
            time.sleep(self.args.measure_s)
        parts = [results.get(timeout=600) for _ in children]
        for child in children:
            child.join(60)
        failed = [p["error"] for p in parts if "error" in p]
        if failed:
            raise RuntimeError(f"{len(failed)} of {procs} processes failed: {failed[0]}")
        return [p | {"gpu_busy": gpu.result()} for p in parts]


def _child(args, video: Path, work: Path, artifact: Path, n: int, legacy: bool, first: int, barrier, results) -> None:
    try:
        results.put(Bench(args, video, work, artifact).measure(n, legacy, first=first, barrier=barrier))
    except Exception as exc:  # reported by the parent, which would otherwise wait for it
        barrier.abort()
        results.put({"error": f"{type(exc).__name__}: {exc}"})


def decode_only(video: Path, n: int, fps: float, seconds: float, legacy: bool) -> dict:
    """N paced FrameSources with a consumer taking every frame: the decode side alone, CPU per camera."""
    import threading

    import psutil

    from pipelines.decode import DecodeOptions
    from pipelines.sources import FrameSource, SourceConfig

    opts = DecodeOptions() if legacy else DecodeOptions(max_side_px=640, threads=1, skip_frames=True, backend="auto")
    sources = [FrameSource(f"cam-{c}", SourceConfig(url=str(video), loop=True, analysis_fps=fps, decode=opts)).start()
               for c in range(n)]
    stop, taken = threading.Event(), [0] * n

    def consume(c: int) -> None:
        while not stop.is_set():
            taken[c] += sources[c].get(timeout_s=0.2) is not None

    threads = [threading.Thread(target=consume, args=(c,), daemon=True) for c in range(n)]
    for t in threads:
        t.start()
    time.sleep(3.0)  # opened and decoding
    proc = psutil.Process()
    cpu0, t0, got0 = _cpu_s(proc), time.monotonic(), sum(taken)
    decoded0 = sum(src.stats().frames_decoded for src in sources)
    probe, probe_cpu_s = gil_probe(seconds)
    cpu1, t1, got1 = _cpu_s(proc) - probe_cpu_s, time.monotonic(), sum(taken)
    decoded1 = sum(src.stats().frames_decoded for src in sources)
    stop.set()
    for src in sources:
        src.stop()
    cores = (cpu1 - cpu0) / (t1 - t0)
    return {"config": "before" if legacy else "now", "cameras": n, "cores": cores, "cores_per_camera": cores / n,
            "decoded_fps": (decoded1 - decoded0) / (t1 - t0), "sampled_fps": (got1 - got0) / (t1 - t0),
            "probe_per_s": probe}


def gil_probe(seconds: float) -> tuple[float, float]:
    """(pure-Python work done per second by this thread, its CPU seconds). Against the same probe in
    an idle process, the share of the GIL (and of a core) that the decode threads leave to the rest
    of a stream manager: its batcher, device thread, trackers and rules all need the GIL, and on a
    GPU box they, not the GPU, were the limit. The CPU seconds are taken out of the decoders' cores."""
    count, cpu0, deadline = 0, time.thread_time(), time.monotonic() + seconds
    while time.monotonic() < deadline:
        total = 0
        for i in range(1000):
            total += i * i
        count += 1
    return count / seconds, time.thread_time() - cpu0


class GpuBusy:
    """Mean GPU utilisation (%) while the block runs, sampled from `nvidia-smi` every 0.5 s in a
    thread (no NVML binding needed); "n/a" on a box without an NVIDIA GPU."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled  # off in a --processes child: the parent samples the whole GPU once

    def __enter__(self) -> GpuBusy:
        import shutil
        import threading

        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread = None
        if self.enabled and shutil.which("nvidia-smi"):
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        cmd = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        while not self._stop.wait(0.5):
            with contextlib.suppress(Exception):
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.split()
                self._samples.append(float(np.mean([float(v) for v in out])))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(6)

    def result(self) -> str:
        return f"{np.mean(self._samples):.0f} %" if self._samples else "n/a"


def _by_camera(streams: list[dict]) -> dict[str, dict]:
    return {s["camera_id"]: s for s in streams}


def _cpu_s(proc) -> float:
    """CPU seconds of this process and its live children (decoder processes, if any)."""
    total = sum(proc.cpu_times()[:2])
    for child in proc.children(recursive=True):
        with contextlib.suppress(Exception):  # a child that ended between listing and asking
            total += sum(child.cpu_times()[:2])
    return total


def _sample_latencies(core, seconds: float) -> list[float]:
    """Each camera's frame->result latency of its newest analysed frame, sampled when it changes."""
    seen: dict[str, int] = {}
    out: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for s in core.list_streams():
            if s["frames_analysed"] != seen.get(s["camera_id"]) and s["latency_ms"] is not None:
                seen[s["camera_id"]] = s["frames_analysed"]
                out.append(s["latency_ms"])
        time.sleep(0.1)
    return out


def summarise(n: int, target: float, parts: list[dict]) -> dict:
    """One row from the raw counters of one or more managers measured over the same window."""
    before = {c: s for p in parts for c, s in p["before"].items()}
    after = {c: s | {"seconds": p["seconds"]} for p in parts for c, s in p["after"].items()}

    def delta(key: str) -> np.ndarray:
        return np.array([after[c][key] - before[c][key] for c in after], dtype=float)

    per_camera = delta("frames_analysed") / np.array([after[c]["seconds"] for c in after])
    latencies = [v for p in parts for v in p["latencies"]]
    lat = np.array(latencies) if latencies else np.array([np.nan])
    states = sorted({s.get("state", "?") for s in after.values()} | {f"decoder {s.get('decoder', '?')}"
                                                                      for s in after.values()})
    batchers = [b for p in parts for b in p["batchers"].values()]
    return {
        "cameras": n, "target_fps": target, "seconds": round(max(p["seconds"] for p in parts), 1),
        "total_fps": float(per_camera.sum()), "mean_fps": float(per_camera.mean()), "min_fps": float(per_camera.min()),
        "holding": int((per_camera >= HOLD_FRACTION * target).sum()),
        "decoded": int(delta("frames_decoded").sum()), "skipped": int(delta("frames_skipped").sum()),
        "dropped": int(delta("frames_dropped").sum()),
        "p50_ms": float(np.nanpercentile(lat, 50)), "p99_ms": float(np.nanpercentile(lat, 99)),
        "cpu_cores": sum(p["cpu_s"] / p["seconds"] for p in parts), "gpu_busy": parts[0]["gpu_busy"],
        "states": states, "mean_batch": round(np.mean([b["completed"] / max(b["batches"], 1) for b in batchers]), 1),
    }


HEADER = ("| config | cameras | analysed frames/s total | per camera mean / min (target {t:g}) | cameras >= 95 % "
          "| decoded / skipped / dropped | p50 / p99 latency | CPU cores busy | frames per core-second | GPU busy "
          "| states |\n|---|---|---|---|---|---|---|---|---|---|---|")


def row(r: dict) -> str:
    per_core = r["total_fps"] / r["cpu_cores"] if r["cpu_cores"] else float("nan")
    config = r["config"] + (f" ({r['processes']} processes)" if r.get("processes", 1) > 1 else "")
    return (f"| {config} | {r['cameras']} | {r['total_fps']:.1f} | {r['mean_fps']:.2f} / {r['min_fps']:.2f} | "
            f"{r['holding']}/{r['cameras']} | {r['decoded']} / {r['skipped']} / {r['dropped']} | "
            f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f} ms | {r['cpu_cores']:.2f} | {per_core:.1f} | {r['gpu_busy']} | "
            f"{','.join(r['states'])} |")


def _per_core(r: dict) -> float:
    return r["total_fps"] / r["cpu_cores"] if r["cpu_cores"] else 0.0


def _ratio(now: float, before: float) -> str:
    return f"{now / before:.2f}x" if before > 0.05 else "n/a (nothing analysed before)"


def holds(r: dict) -> bool:
    return r["holding"] == r["cameras"]


def sweep(bench: Bench, max_n: int, report) -> int:
    """Double N until some camera misses its target, then bisect: the knee is the largest N that holds."""
    good, bad, n = 0, None, 1
    while n <= max_n:
        if holds(report(bench.run(n))):
            good, n = n, n * 2
        else:
            bad = n
            break
    while bad is not None and bad - good > 1:
        mid = (good + bad) // 2
        if holds(report(bench.run(mid))):
            good = mid
        else:
            bad = mid
    return good


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    from hub.settings import apply_runtime_env

    settings = apply_runtime_env()
    work = Path(tempfile.mkdtemp(prefix="streams-e2e-"))
    video = make_video(args.video or settings.shared_dir / "data/video/road-cars.mp4", args.resize, args.gop, work)
    if args.decode_only:
        idle, _ = gil_probe(min(args.measure_s, 5.0))
        print(f"decode only: {video.name}, analysis_fps {args.analysis_fps:g}, {args.measure_s:g} s per row; "
              f"GIL left = a pure-Python thread's rate against {idle:.0f}/s in this process before any camera\n"
              "| config | cameras | CPU cores busy | cores per camera | frames decoded/s | frames sampled/s | GIL left |\n"
              "|---|---|---|---|---|---|---|")
        rows = []
        for n in (int(v) for v in args.cameras.split(",")):
            for legacy in (True, False):
                r = decode_only(video, n, args.analysis_fps, args.measure_s, legacy)
                rows.append(r | {"gil_left": r["probe_per_s"] / idle})
                print(f"| {r['config']} | {n} | {r['cores']:.2f} | {r['cores_per_camera']:.3f} | "
                      f"{r['decoded_fps']:.0f} | {r['sampled_fps']:.1f} | {100 * r['probe_per_s'] / idle:.0f} % |",
                      flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
        return rows
    bench = Bench(args, video, work)
    rows: list[dict] = []
    print(f"device {bench.device}; video {video.name}; analysis_fps {args.analysis_fps:g}; "
          f"warm-up {args.warmup_s:g} s, measured {args.measure_s:g} s per row; options {bench.options or '-'}")
    print(HEADER.format(t=args.analysis_fps))

    def report(r: dict) -> dict:
        rows.append(r)
        print(row(r), flush=True)
        return r

    if args.sweep:
        knee = sweep(bench, args.max_cameras, report)
        print(f"knee: {knee} cameras hold {args.analysis_fps:g} analysed frames/s each")
        if args.oversubscribe and knee:
            report(bench.run(max(1, round(knee * args.oversubscribe))) | {"oversubscribed": args.oversubscribe})
    else:
        for n in (int(v) for v in args.cameras.split(",")):
            if args.compare:
                before = report(bench.run(n, legacy=True))
            now = report(bench.run(n))
            if args.compare:
                print(f"  {n} cameras: {_ratio(now['total_fps'], before['total_fps'])} the analysed frames/s of the "
                      f"pre-issue-10 decoding, {_ratio(_per_core(now), _per_core(before))} per CPU core-second",
                      flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
