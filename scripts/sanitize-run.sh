#!/usr/bin/env bash
# scripts/sanitize-run.sh CMD [ARGS...] — run CMD with gcc's AddressSanitizer
# and UndefinedBehaviorSanitizer runtimes preloaded, as an extension built
# with MULTIGIL_SANITIZE=1 needs when it is loaded into an ordinary
# (uninstrumented) Python.
#
#   bash scripts/sanitize-run.sh .venv-asan/bin/python -c 'import multigil'
#
# ASAN_OPTIONS / UBSAN_OPTIONS may be set by the caller; the defaults:
#   detect_leaks=0           CPython itself leaks at exit
#   abort_on_error=1         a report kills the process (exit 134)
#   allocator_may_return_null=1  huge allocations fail with NULL (MemoryError)
#   halt_on_error=1          UBSan: the first report is fatal
# Under pytest use --capture=sys (or -s): with the default fd capture the
# report goes to pytest's capture file and is lost when the process aborts.
set -Eeuo pipefail
[ $# -gt 0 ] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

CC=${CC:-gcc}
find_rt() {
  local f
  f=$("$CC" -print-file-name="$1" 2>/dev/null || true)
  case "$f" in
    /*) [ -e "$f" ] && { readlink -f "$f"; return 0; } ;;
  esac
  printf 'sanitize-run: ERROR: %s has no %s (on Debian: apt-get install gcc, or libasan8 libubsan1)\n' "$CC" "$1" >&2
  return 1
}
ASAN_RT=$(find_rt libasan.so)
UBSAN_RT=$(find_rt libubsan.so)

export LD_PRELOAD="$ASAN_RT $UBSAN_RT${LD_PRELOAD:+ $LD_PRELOAD}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
exec "$@"
