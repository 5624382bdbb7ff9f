"""N simulated cameras -> decode -> gpu.DynamicBatcher -> `see` detector, against the naive loop.

Both sides run in the same process on the same frames and weights:
- ours: one thread per camera decodes its video (OpenCV) and submits frames to a DynamicBatcher
  whose batch function is `Detector.detect_arrays` (device letterbox, batched model, device NMS);
- naive: what a user writes, `ultralytics.YOLO(weights).predict(frame)` frame by frame (on CPU the
  shared int8 ONNX; on CUDA a `.pt` holding the same weights, since that is what runs there).
Prints frames/s, p50/p99 latency (frame ready -> detections back), drops, the ratio line and how
well the detections agree (F1 of same-class matches at IoU >= 0.5, naive as reference).

    .venv/bin/python bench/camera_throughput.py --cameras 8                  # CPU, ~2-3 min
    python3 bench/camera_throughput.py --device cuda --cameras 64 --decode memory --resize 1920x1080

`--decode live` decodes in the camera threads (end to end from the file); `--decode memory` decodes
each clip once up front (into pinned memory on CUDA) and replays it, which isolates the detector
path from CPU video decoding (the H100 box decodes with CPU threads, not NVDEC).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: the repo's packages, no install needed


class Clip:
    """One video feeding some cameras. Camera c plays it from its own offset (so a batch holds
    different frames), wrapping at the end. `live`: each camera decodes with its own OpenCV
    capture while it runs; `memory`: decoded once here (pinned torch tensors on CUDA)."""

    def __init__(self, path: Path, mode: str, resize: tuple[int, int] | None, pinned: bool, max_frames: int) -> None:
        import cv2

        self.path, self.mode, self.resize = path, mode, resize
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise SystemExit(f"cannot open video {path}")
        self.length = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 1
        ok, frame = cap.read()
        if not ok:
            raise SystemExit(f"cannot decode video {path}")
        self.shape_hw = self._convert(frame).shape[:2]
        self._memory = None
        if mode == "memory":
            frames = [self._convert(frame)]
            while len(frames) < min(max_frames, self.length):
                ok, frame = cap.read()
                if not ok:
                    break
                frames.append(self._convert(frame))
            self._memory = _stack(frames, pinned)
            self.length = len(frames)
        cap.release()

    def _convert(self, bgr: np.ndarray) -> np.ndarray:
        import cv2

        if self.resize:
            bgr = cv2.resize(bgr, self.resize, interpolation=cv2.INTER_LINEAR)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def offset(self, camera: int) -> int:
        return (camera * 7) % self.length

    def frames(self, camera: int, n: int):
        """n frames for camera `camera`: a list (memory) or a generator decoding as it goes (live)."""
        start = self.offset(camera)
        if self._memory is not None:
            return [self._memory[(start + i) % self.length] for i in range(n)]
        return self._decode(start, n)

    def _decode(self, start: int, n: int):

        cap = _capture(self.path)
        for _ in range(start):  # positioned now, before anyone starts a clock
            cap.grab()

        def frames():
            nonlocal cap
            produced = 0
            while produced < n:
                ok, frame = cap.read()
                if not ok:  # end of the file: a camera loops its clip
                    cap.release()
                    cap = _capture(self.path)
                    continue
                produced += 1
                yield self._convert(frame)
            cap.release()

        return frames()


def _capture(path: Path):
    import cv2

    # One decoder thread per camera: many cameras, each with FFmpeg's default of one thread per
    # core, oversubscribe the CPU and starve the batcher.
    return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])


def _stack(frames: list[np.ndarray], pinned: bool):
    if not pinned:
        return frames
    import torch

    out = torch.empty((len(frames), *frames[0].shape), dtype=torch.uint8, pin_memory=True)
    for i, f in enumerate(frames):
        out[i].numpy()[...] = f
    return out


def open_clips(videos: list[Path], mode: str, resize, pinned: bool, max_frames: int) -> list[Clip]:
    return [Clip(v, mode, resize, pinned, max_frames) for v in videos]


def latency_summary(latencies_s: list[float]) -> dict:
    if not latencies_s:
        return {"p50_ms": float("nan"), "p99_ms": float("nan")}
    ms = np.asarray(latencies_s) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def agreement(reference: dict, ours: dict, iou_min: float = 0.5) -> dict:
    """Same-class greedy matching at IoU >= iou_min, the naive loop's boxes as the reference."""
    tp = n_ref = n_ours = frames = 0
    for key, (ref_xyxy, ref_cls) in reference.items():
        det = ours.get(key)
        if det is None:  # dropped frame: nothing to compare
            continue
        frames += 1
        n_ref, n_ours = n_ref + len(ref_xyxy), n_ours + len(det)
        if not len(ref_xyxy) or not len(det):
            continue
        lt = np.maximum(ref_xyxy[:, None, :2], det.xyxy[None, :, :2])
        rb = np.minimum(ref_xyxy[:, None, 2:], det.xyxy[None, :, 2:])
        inter = np.clip(rb - lt, 0, None).prod(-1)
        area_r = (ref_xyxy[:, 2:] - ref_xyxy[:, :2]).prod(-1)
        area_o = (det.xyxy[:, 2:] - det.xyxy[:, :2]).prod(-1)
        iou = inter / (area_r[:, None] + area_o[None] - inter)
        iou[ref_cls[:, None] != det.class_id[None]] = 0
        used = set()
        for r in np.argsort(-iou.max(1)):
            o = next((o for o in np.argsort(-iou[r]) if iou[r, o] >= iou_min and o not in used), None)
            if o is not None:
                used.add(o)
                tp += 1
    precision = tp / n_ours if n_ours else 1.0
    recall = tp / n_ref if n_ref else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall, "frames": frames, "boxes_naive": n_ref, "boxes_ours": n_ours}


def export_ultralytics_pt(artifact_dir: Path, dest: Path) -> Path:
    """The artifact's weights as an Ultralytics checkpoint, for the naive loop on a GPU."""
    import torch

    from models.detection.artifact import DetectorSpec
    from models.detection.backends import build_torch_model

    spec = DetectorSpec.read(artifact_dir)
    model = build_torch_model(artifact_dir / spec.model_file, spec)
    model.args = {"task": "detect", "imgsz": spec.imgsz[0]}
    torch.save({"model": model, "train_args": model.args, "date": None, "version": "hub"}, dest)
    return dest


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", type=int, default=8)
    p.add_argument("--frames-per-camera", type=int, default=None, help="default: 24 on CPU, 64 on CUDA")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:n]")
    p.add_argument("--backend", default="auto", help="auto (torch on CUDA, onnxruntime on CPU) | onnxruntime | torch")
    p.add_argument("--shared", type=Path, default=None, help="the shared folder (default: HUB_SHARED_DIR / ../shared)")
    p.add_argument("--video", action="append", default=None, help="video file(s); cameras take them in turn")
    p.add_argument("--decode", choices=("live", "memory"), default="live")
    p.add_argument("--resize", default=None, help="WxH: scale frames to this size (e.g. 1920x1080 cameras)")
    p.add_argument("--rect", action=argparse.BooleanOptionalAction, default=True,
                   help="frame-shaped model input (640x384 for 16:9) instead of 640x640")
    p.add_argument("--max-batch", type=int, default=None, help="default: cameras (CPU: min(cameras, 16))")
    p.add_argument("--max-wait-ms", type=float, default=10.0)
    p.add_argument("--max-queue-per-camera", type=int, default=2)
    p.add_argument("--fps", type=float, default=0.0, help="pace each camera at this rate (0: as fast as it can)")
    p.add_argument("--naive-frames", type=int, default=None, help="frames the naive loop runs (default: all on CPU, 256 on CUDA)")
    p.add_argument("--no-naive", action="store_true", help="skip the naive loop (no ratio)")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    return p.parse_args(argv)


def run_pipeline(detector, clips: list[Clip], args) -> dict:
    from gpu import BatchPolicy, Dropped, DynamicBatcher

    policy = BatchPolicy(
        max_batch_size=args.max_batch, max_wait_ms=args.max_wait_ms,
        max_queue=max(4 * args.max_batch, args.cameras * args.max_queue_per_camera),
        max_queue_per_key=args.max_queue_per_camera,
    )
    batcher = DynamicBatcher(detector.detect_arrays, policy, name="cameras")
    results: dict[tuple[int, int], object] = {}
    latencies: list[float] = []
    decode_s = [0.0] * args.cameras  # time each camera thread spent producing frames
    lock = threading.Lock()
    start_barrier = threading.Barrier(args.cameras + 1)

    def camera(c: int) -> None:
        key = f"cam-{c}"
        frames = iter(clips[c % len(clips)].frames(c, args.frames_per_camera))
        inflight = threading.Semaphore(args.max_queue_per_camera)  # unpaced: at most this many waiting
        start_barrier.wait()
        t0 = time.perf_counter()
        for i in range(args.frames_per_camera):
            t_decode = time.perf_counter()
            frame = next(frames)
            decode_s[c] += time.perf_counter() - t_decode
            if args.fps > 0:
                time.sleep(max(0.0, t0 + i / args.fps - time.perf_counter()))
            else:
                inflight.acquire()
            ready = time.perf_counter()
            future = batcher.submit(key, frame)

            def done(f, i=i, ready=ready):
                if args.fps <= 0:
                    inflight.release()
                if f.exception() is None:
                    with lock:
                        results[(c, i)] = f.result()
                        latencies.append(time.perf_counter() - ready)
                elif not isinstance(f.exception(), Dropped):
                    print(f"camera {c} frame {i}: {f.exception()!r}", file=sys.stderr)

            future.add_done_callback(done)

    threads = [threading.Thread(target=camera, args=(c,), daemon=True) for c in range(args.cameras)]
    for t in threads:
        t.start()
    start_barrier.wait()
    t_start = time.perf_counter()
    for t in threads:
        t.join()
    batcher.close(drain=True)
    elapsed = time.perf_counter() - t_start
    stats = batcher.stats()
    return {
        "frames": stats.completed, "seconds": elapsed, "fps": stats.completed / elapsed,
        "dropped": stats.dropped, "failed": stats.failed, "mean_batch": stats.mean_batch_size,
        "decode_fps_per_camera": args.frames_per_camera / max(sum(decode_s) / args.cameras, 1e-9),
        "results": results, **latency_summary(latencies),
    }


def run_naive(weights: Path, clips: list[Clip], args, device: str, limit: int) -> dict:
    from gpu.compat import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    model = YOLO(str(weights), task="detect")
    predict_device = device if device.startswith("cuda") else "cpu"
    warm = next(iter(clips[0].frames(0, 1)))
    model.predict(_bgr(warm), device=predict_device, verbose=False)
    streams, left = {}, limit
    for c in range(args.cameras):  # opened and positioned before the clock starts, as for ours
        if left <= 0:
            break
        streams[c] = clips[c % len(clips)].frames(c, min(args.frames_per_camera, left))
        left -= args.frames_per_camera
    results, t0 = {}, time.perf_counter()
    for c, frames in streams.items():  # camera by camera, decoding as a user's loop would
        for i, frame in enumerate(frames):
            r = model.predict(_bgr(frame), device=predict_device, verbose=False)[0]
            results[(c, i)] = (r.boxes.xyxy.cpu().numpy(), r.boxes.cls.cpu().numpy().astype(np.int64))
    elapsed = time.perf_counter() - t0
    return {"frames": len(results), "seconds": elapsed, "fps": len(results) / elapsed, "results": results}


def _bgr(frame) -> np.ndarray:
    array = frame.numpy() if hasattr(frame, "numpy") else frame
    return np.ascontiguousarray(array[..., ::-1])


def main(argv=None) -> dict:
    args = parse_args(argv)
    from gpu.device import pick_device
    from hub.settings import apply_runtime_env, get_settings
    from models.detection import Detector, prepare_default

    apply_runtime_env()
    shared = (args.shared or get_settings().shared_dir).resolve()
    device = pick_device(args.device)
    cuda = device.startswith("cuda")
    args.frames_per_camera = args.frames_per_camera or (64 if cuda else 24)
    args.max_batch = args.max_batch or (min(args.cameras, 64) if cuda else min(args.cameras, 16))
    videos = [Path(v) for v in args.video] if args.video else [
        shared / "data/video/road-cars.mp4", shared / "data/video/parking-lot-overhead.mp4"]
    resize = tuple(int(v) for v in args.resize.lower().split("x")) if args.resize else None

    work = Path(tempfile.mkdtemp(prefix="see-bench-"))
    prepare_default(shared, work / "artifact")
    detector = Detector(backend=args.backend, rect=args.rect, max_batch_size=args.max_batch)
    t0 = time.perf_counter()
    detector.load(work / "artifact", device)
    load_s = time.perf_counter() - t0
    clips = open_clips(videos, args.decode, resize, pinned=cuda, max_frames=96)

    ours = run_pipeline(detector, clips, args)
    out = {
        "device": device, "device_name": _device_name(device), "backend": detector.backend.name,
        "dtype": str(detector.backend.dtype).replace("torch.", ""), "cameras": args.cameras,
        "frames_per_camera": args.frames_per_camera, "decode": args.decode, "resize": args.resize,
        "rect": args.rect, "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "load_s": load_s,
        "ours": {k: v for k, v in ours.items() if k != "results"},
    }
    frame_hw = clips[0].shape_hw
    print(f"device: {device} ({out['device_name']}), backend {out['backend']} {out['dtype']}, "
          f"{args.cameras} cameras x {args.frames_per_camera} frames, {frame_hw[1]}x{frame_hw[0]} "
          f"(decode {args.decode}), rect={args.rect}, batch <= {args.max_batch}, wait {args.max_wait_ms:g} ms")
    print(f"ours : {ours['fps']:8.1f} frames/s  p50 {ours['p50_ms']:.0f} ms  p99 {ours['p99_ms']:.0f} ms  "
          f"drops {ours['dropped']}  mean batch {ours['mean_batch']:.1f}  ({ours['frames']} frames in {ours['seconds']:.1f} s; "
          f"a camera thread produces {ours['decode_fps_per_camera']:.0f} frames/s)")
    if not args.no_naive:
        if cuda:
            weights = export_ultralytics_pt(work / "artifact", work / "yolov8n-coco-hub.pt")
        else:
            weights = shared / "models/detection/yolov8n-coco-int8.onnx"
        limit = args.naive_frames or (256 if cuda else args.cameras * args.frames_per_camera)
        naive = run_naive(weights, clips, args, device, limit)
        agree = agreement(naive["results"], ours["results"])
        ratio = ours["fps"] / naive["fps"]
        out["naive"] = {k: v for k, v in naive.items() if k != "results"} | {"weights": weights.name}
        out["ratio"], out["agreement"] = ratio, agree
        print(f"naive: {naive['fps']:8.1f} frames/s  (ultralytics YOLO({weights.name}).predict, frame by frame, "
              f"{naive['frames']} frames)")
        print(f"ratio: {ratio:.2f}x the naive loop's frames/s on the same frames and weights; detections agree: "
              f"F1 {agree['f1']:.3f} (precision {agree['precision']:.3f}, recall {agree['recall']:.3f}, "
              f"same class, IoU>=0.5, {agree['frames']} frames)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


def _device_name(device: str) -> str:
    import platform

    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


if __name__ == "__main__":
    main()
