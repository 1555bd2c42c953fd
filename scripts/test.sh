#!/usr/bin/env bash
# scripts/test.sh — set up (scripts/setup.sh) and run the test suite.
#
#   bash scripts/test.sh [pytest args...]      e.g. bash scripts/test.sh -k queue -x
#
# Same environment variables as scripts/setup.sh (PYTHON, VENV, ...).
# The exit status is pytest's, except that "no tests collected" (pytest's 5)
# is a failure here too.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

bash "$ROOT/scripts/setup.sh"

VENV=${VENV:-.venv}
case "$VENV" in /*) ;; *) VENV=$ROOT/$VENV ;; esac
VPY=$VENV/bin/python

printf 'test: %s -m pytest (Python %s)\n' "$VPY" "$("$VPY" -c 'import sys; print(sys.version.split()[0])')" >&2
rc=0
"$VPY" -m pytest -q -p no:cacheprovider "$@" || rc=$?
case $rc in
  0) ;;
  5) printf 'test: ERROR: pytest collected no tests (exit 5) — that is a failure\n' >&2; rc=1 ;;
  *) printf 'test: pytest failed (exit %s)\n' "$rc" >&2 ;;
esac
exit "$rc"
