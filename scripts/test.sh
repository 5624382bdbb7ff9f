#!/usr/bin/env bash
# The test command of README.md and CI: install if needed, lint (ruff, import layers), run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check .
.venv/bin/lint-imports --no-cache   # the layer contract of DESIGN.md (pyproject.toml)
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then echo "no tests were collected: failing" >&2; exit 1; fi
exit "$rc"
