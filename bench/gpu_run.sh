#!/usr/bin/env bash
# Camera-throughput benchmark on a CUDA machine: 1, 8, 32 and 64 cameras, printed as a markdown
# table (paste it into docs/benchmarks.md). Installs nothing.
#
#   bench/gpu_run.sh [--shared DIR] [--python PY] [--cameras "1 8 32 64"] [--out DIR] [-- extra bench args]
#
# Needs: this repo, the shared folder (--shared, else $HUB_SHARED_DIR, else ../shared next to the
# repo: models/detection/yolov8n-coco-int8.onnx, data/video/*.mp4, data/images/bus.jpg) and a
# Python with CUDA torch, torchvision, ultralytics, onnx, onnxruntime, opencv, numpy, pillow,
# pydantic and pydantic-settings. Two scenarios per camera count:
#   live      the shared 720p/432p videos decoded by the camera threads (OpenCV, CPU), end to end;
#   1080p     frames scaled to 1920x1080 and decoded once into pinned memory, so the number is the
#             detector path for 1080p input (upload, letterbox, fp16 model, NMS, results back).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
SHARED="${HUB_SHARED_DIR:-$REPO/../shared}"
CAMERAS="1 8 32 64"
OUT=""
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --shared) SHARED="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    --cameras) CAMERAS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
OUT="${OUT:-$(mktemp -d /tmp/see-gpu-bench.XXXXXX)}"
mkdir -p "$OUT"
SHARED="$(cd "$SHARED" && pwd)"
export HUB_SHARED_DIR="$SHARED" HUB_HOME="$OUT/hub-home" YOLO_CONFIG_DIR="$OUT/ultralytics"
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0 YOLO_VERBOSE=False PYTHONUNBUFFERED=1

"$PY" - <<'EOF' || { echo "missing requirements (this script installs nothing)" >&2; exit 3; }
import importlib, sys
missing = [m for m in ("torch", "torchvision", "ultralytics", "onnx", "onnxruntime", "cv2", "numpy", "PIL",
                       "pydantic", "pydantic_settings") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing python packages: {missing}")
import torch
if not torch.cuda.is_available():
    sys.exit("torch sees no CUDA GPU")
print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}", file=sys.stderr)
EOF

cd "$REPO"
for n in $CAMERAS; do
  "$PY" bench/camera_throughput.py --device cuda --cameras "$n" --shared "$SHARED" \
      --decode live --json "$OUT/live-$n.json" "${EXTRA[@]}"
  "$PY" bench/camera_throughput.py --device cuda --cameras "$n" --shared "$SHARED" \
      --decode memory --resize 1920x1080 --json "$OUT/1080p-$n.json" "${EXTRA[@]}"
done

"$PY" - "$OUT" $CAMERAS <<'EOF'
import json, sys
from pathlib import Path
out, cams = Path(sys.argv[1]), sys.argv[2:]
rows = []
for scenario in ("live", "1080p"):
    for n in cams:
        r = json.loads((out / f"{scenario}-{n}.json").read_text())
        o, nv, a = r["ours"], r.get("naive", {}), r.get("agreement", {})
        size = r["resize"] or "native (1280x720 / 768x432)"
        rows.append(f"| {n} | {size}, decode {r['decode']} | {o['fps']:.0f} | {o['p50_ms']:.0f} | {o['p99_ms']:.0f} "
                    f"| {o['dropped']} | {o['mean_batch']:.1f} | {nv.get('fps', float('nan')):.0f} "
                    f"| {r.get('ratio', float('nan')):.1f}x | {a.get('f1', float('nan')):.3f} |")
first = json.loads((out / f"live-{cams[0]}.json").read_text())
print(f"\n{first['device_name']}, backend {first['backend']} {first['dtype']}, rect={first['rect']}, "
      f"max wait {first['max_wait_ms']:g} ms, naive = ultralytics YOLO(.pt, same weights).predict frame by frame\n")
print("| cameras | input | frames/s | p50 ms | p99 ms | drops | mean batch | naive frames/s | ratio | F1 vs naive |")
print("|---|---|---|---|---|---|---|---|---|---|")
print("\n".join(rows))
EOF
echo "(JSON per run in $OUT)" >&2
