#!/usr/bin/env bash
# scripts/demo.sh — set up everything (scripts/setup.sh) and run the main job:
# the parallel demo (CPU-bound pure Python on all cores through
# sub-interpreters), then `multigil bench`, which compares interpreters with
# threads and processes on this machine (about a minute on 2 cores).
#
#   bash scripts/demo.sh [multigil bench options...]   e.g. --quick
#
# Same environment variables as scripts/setup.sh (PYTHON, VENV, ...).
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

bash "$ROOT/scripts/setup.sh"

VENV=${VENV:-.venv}
case "$VENV" in /*) ;; *) VENV=$ROOT/$VENV ;; esac

"$VENV/bin/python" "$ROOT/examples/parallel_demo.py"
echo
exec "$VENV/bin/multigil" bench "$@"
