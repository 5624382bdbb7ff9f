#!/usr/bin/env bash
# The camera pipeline on a CUDA machine (issue 10), prepared as one run: NVDEC's own test, then
# bench/streams_e2e.py on 1080p30 H.264 at analysis_fps 10 -- the sweep for the knee and 2x
# oversubscription with NVDEC, and the CPU decoder at the NVDEC knee for comparison. Paste the
# tables into docs/benchmarks.md.
#
#   bench/gpu_streams.sh [--wheels DIR] [--max-cameras 256] [--out DIR]
#
# --wheels: a folder with the PyNvVideoCodec wheel (a GPU box without an index: pip download
# PyNvVideoCodec==2.2.4 elsewhere and carry it). Needs the repo's .venv (scripts/install.sh) and
# ../shared next to the repo, and ffmpeg with libx264 (the 1080p re-encode of the road video).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$REPO/.venv/bin/python"
WHEELS=""
MAX=256
OUT="$(mktemp -d /tmp/gpu-streams.XXXXXX)"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --wheels) WHEELS="$2"; shift 2 ;;
    --max-cameras) MAX="$2"; shift 2 ;;
    --out) OUT="$2"; mkdir -p "$OUT"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
cd "$REPO"
if ! "$PY" -c "import PyNvVideoCodec" 2>/dev/null; then
  if [[ -n "$WHEELS" ]]; then "$PY" -m pip install -q --no-index --find-links "$WHEELS" PyNvVideoCodec==2.2.4
  else "$PY" -m pip install -q PyNvVideoCodec==2.2.4; fi
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
# The hardware decoder against FFmpeg's (skipped, and so useless, without a GPU).
"$PY" -m pytest tests/pipelines/test_nvdec.py -q -rs -p no:cacheprovider | tee "$OUT/test_nvdec.txt"
common=(--resize 1920x1080 --analysis-fps 10 --device cuda --warmup-s 10 --measure-s 20)
# How much of the GIL the decode threads leave (the H200 run of 2026-11-30 found one process
# Python-bound at ~12 cameras): FFmpeg ("before") against NVDEC ("now", auto on this box).
"$PY" bench/streams_e2e.py --resize 1920x1080 --analysis-fps 10 --decode-only --cameras 16,100 --measure-s 10 \
  --json "$OUT/decode_gil.json" | tee "$OUT/decode_gil.md"
"$PY" bench/streams_e2e.py "${common[@]}" --sweep --max-cameras "$MAX" --oversubscribe 2 \
  --option decode='{"backend": "nvdec"}' --json "$OUT/nvdec.json" | tee "$OUT/nvdec.md"
knee="$(sed -n 's/^knee: \([0-9]*\) cameras.*/\1/p' "$OUT/nvdec.md" | tail -1)"
[[ -n "$knee" && "$knee" != 0 ]] || knee=8
"$PY" bench/streams_e2e.py "${common[@]}" --cameras "$knee" \
  --option decode='{"backend": "cpu"}' --json "$OUT/cpu.json" | tee "$OUT/cpu.md"
echo "tables and logs in $OUT"
