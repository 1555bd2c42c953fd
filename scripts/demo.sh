#!/usr/bin/env bash
# scripts/demo.sh — set up everything (scripts/setup.sh) and run the main job:
# the parallel demo, CPU-bound pure Python on all cores through sub-interpreters.
#
#   bash scripts/demo.sh [args...]
#
# Same environment variables as scripts/setup.sh (PYTHON, VENV, ...).
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

bash "$ROOT/scripts/setup.sh"

VENV=${VENV:-.venv}
case "$VENV" in /*) ;; *) VENV=$ROOT/$VENV ;; esac

# TODO(lead): switch to the CLI once it exists:
#   exec "$VENV/bin/multigil" bench --quick "$@"
exec "$VENV/bin/python" "$ROOT/examples/parallel_demo.py" "$@"
