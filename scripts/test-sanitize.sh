#!/usr/bin/env bash
# scripts/test-sanitize.sh [pytest args...] — build multigil._core with
# AddressSanitizer + UndefinedBehaviorSanitizer (MULTIGIL_SANITIZE=1) into its
# own venv (.venv-asan, or $VENV) and run the core tests under them.
#
# Without arguments it runs the files in $SANITIZE_TESTS (default: the ones
# below that exist). Same environment variables as scripts/setup.sh; CI runs it
# with PYTHON set to pyenv's 3.12.1.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# The test files that exercise the C core directly.
SANITIZE_TEST_GLOBS=${SANITIZE_TEST_GLOBS:-"tests/test_core*.py tests/test_interpreters*.py tests/test_xidata*.py tests/test_queue*.py tests/test_sync*.py tests/test_shm*.py tests/test_executor_data.py tests/test_executor_recycle.py tests/test_executor_spin.py tests/test_reliability*.py"}

export VENV=${VENV:-.venv-asan}
export MULTIGIL_SANITIZE=1
bash "$ROOT/scripts/setup.sh"
case "$VENV" in /*) ;; *) VENV=$ROOT/$VENV ;; esac

args=("$@")
if [ ${#args[@]} -eq 0 ]; then
  shopt -s nullglob
  # shellcheck disable=SC2206  # word splitting + globbing wanted here
  files=($SANITIZE_TEST_GLOBS)
  shopt -u nullglob
  if [ ${#files[@]} -eq 0 ]; then
    printf 'test-sanitize: ERROR: no test files match %s\n' "$SANITIZE_TEST_GLOBS" >&2
    exit 1
  fi
  args=("${files[@]}")
fi

printf 'test-sanitize: running under ASan+UBSan: %s\n' "${args[*]}" >&2
rc=0
# --capture=sys: a sanitizer report is written to fd 2 and must not vanish
# into pytest's fd-capture file when the process aborts.
# Tests marked no_sanitizer (RSS, timings: ASan's quarantine keeps freed memory
# resident) are deselected; MULTIGIL_SANITIZE=1 is in the tests' environment too.
bash "$ROOT/scripts/sanitize-run.sh" "$VENV/bin/python" -m pytest -q -p no:cacheprovider --capture=sys \
  -m "not no_sanitizer" "${args[@]}" || rc=$?
case $rc in
  0) ;;
  5) printf 'test-sanitize: ERROR: pytest collected no tests (exit 5) — that is a failure\n' >&2; rc=1 ;;
  134) printf 'test-sanitize: FAILED: the process aborted (exit 134): a sanitizer report or a C abort, see above\n' >&2 ;;
  *) printf 'test-sanitize: pytest failed (exit %s)\n' "$rc" >&2 ;;
esac
exit "$rc"
