#!/usr/bin/env bash
# scripts/setup.sh — make a virtual environment with multigil installed.
#
#   bash scripts/setup.sh
#
# Finds a CPython >= 3.12, makes a venv (.venv, or $VENV), upgrades pip and
# installs the project NON-editable with its test extras (pip install ".[test]"),
# so that what the tests import is what a wheel would ship.  The C extension
# is built with MULTIGIL_STRICT=1 (-Wall -Wextra -Werror) unless told
# otherwise.  Re-running it is cheap: nothing is rebuilt while pyproject.toml,
# setup.py and src/ are unchanged.
#
# Environment (all optional):
#   PYTHON             the interpreter to use (must be CPython >= 3.12)
#   VENV               the venv directory, relative to the repo root or absolute
#                      (default .venv)
#   MULTIGIL_EXTRAS    extras to install (default "test"; "" for none)
#   MULTIGIL_STRICT    default 1
#   MULTIGIL_SANITIZE  1: build the extension with ASan + UBSan (see .ci/run)
#   MULTIGIL_FORCE     1: reinstall everything even if nothing changed
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

bool() { case "${1,,}" in ''|0|no|false|off) echo 0 ;; *) echo 1 ;; esac; }
export MULTIGIL_STRICT=$(bool "${MULTIGIL_STRICT-1}")
export MULTIGIL_SANITIZE=$(bool "${MULTIGIL_SANITIZE:-0}")
# A sanitizer build needs the sanitizer runtimes preloaded to load at all.
RUN=()
if [ "$MULTIGIL_SANITIZE" = 1 ]; then RUN=(bash "$ROOT/scripts/sanitize-run.sh"); fi
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
EXTRAS=${MULTIGIL_EXTRAS-test}
VENV=${VENV:-.venv}
case "$VENV" in /*) ;; *) VENV=$ROOT/$VENV ;; esac

# ------------------------------------------------------------ find a Python --
# A usable interpreter is CPython >= 3.12 with the GIL (own-GIL sub-interpreters,
# PEP 684).  Prints "X.Y.Z" or nothing.
py_version() {
  "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || true
}
py_usable() {
  "$1" -c '
import sys, sysconfig
ok = (sys.implementation.name == "cpython" and sys.version_info >= (3, 12)
      and not sysconfig.get_config_var("Py_GIL_DISABLED"))
sys.exit(0 if ok else 1)' >/dev/null 2>&1
}

candidates=()
if [ -n "${PYTHON:-}" ]; then
  candidates=("$PYTHON")
else
  if command -v pyenv >/dev/null 2>&1; then
    for v in 3.13.0 3.12.1; do
      p=$(pyenv prefix "$v" 2>/dev/null || true)
      if [ -n "$p" ]; then candidates+=("$p/bin/python${v%.*}"); fi
    done
  fi
  for n in python3.14 python3.13 python3.12; do
    p=$(command -v "$n" 2>/dev/null || true)
    if [ -n "$p" ]; then candidates+=("$p"); fi
  done
fi

PY=
for c in "${candidates[@]}"; do
  c=$(command -v "$c" 2>/dev/null || true)
  [ -n "$c" ] && [ -x "$c" ] || continue
  if py_usable "$c"; then PY=$c; break; fi
done

if [ -z "$PY" ]; then
  if [ -n "${PYTHON:-}" ]; then
    command -v "$PYTHON" >/dev/null 2>&1 || die "PYTHON=$PYTHON: no such executable"
    v=$(py_version "$PYTHON")
    die "PYTHON=$PYTHON ${v:+is Python $v, which }cannot be used: multigil needs CPython >= 3.12 with the GIL (isolated sub-interpreters with their own GIL, PEP 684). Python 3.11 and older cannot host them."
  fi
  die "no CPython >= 3.12 found (tried pyenv 3.13.0 and 3.12.1, python3.14, python3.13, python3.12 on PATH; the default python3 here is $(py_version python3 || echo none), which cannot host own-GIL sub-interpreters). Install one (e.g. 'pyenv install 3.13') or set PYTHON=/path/to/python3.12+."
fi
PYVER=$(py_version "$PY")
log "using $PY (Python $PYVER)"

# ------------------------------------------------------------------- venv --
VPY=$VENV/bin/python
STAMPDIR=$VENV/.multigil
# Identity of the base interpreter: a venv made from another Python is remade.
base_id=$("$PY" -c 'import sys, os; print(os.path.realpath(sys.executable), sys.version.replace("\n", " "))')

if [ -x "$VPY" ] && [ -f "$STAMPDIR/python" ] && [ "$(cat "$STAMPDIR/python")" = "$base_id" ] && "$VPY" -c 'import pip' >/dev/null 2>&1; then
  :
else
  log "creating venv $VENV"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV" || die "could not create a venv with $PY (on Debian: apt-get install python3.X-venv)"
  "$VPY" -m pip install -q --upgrade pip || die "pip upgrade failed"
  mkdir -p "$STAMPDIR"
  printf '%s\n' "$base_id" > "$STAMPDIR/python"
fi

# ----------------------------------------------------------------- stamps --
# deps: what pip must install besides the project (pyproject.toml + extras)
# src:  everything that goes into the built package, and the build flags
deps_stamp=$( { cat pyproject.toml; echo "extras=$EXTRAS"; } | sha256sum | cut -d' ' -f1)
src_stamp=$( {
  echo "strict=$MULTIGIL_STRICT sanitize=$MULTIGIL_SANITIZE extras=$EXTRAS"
  find src -type f ! -name '*.pyc' ! -path '*/__pycache__/*' ! -path '*.egg-info/*' -print0 \
    | LC_ALL=C sort -z | xargs -0 -r sha256sum
  sha256sum pyproject.toml setup.py
  [ -f README.md ] && sha256sum README.md
  [ -f MANIFEST.in ] && sha256sum MANIFEST.in
  true
} | sha256sum | cut -d' ' -f1)

old_deps=$(cat "$STAMPDIR/deps" 2>/dev/null || true)
old_src=$(cat "$STAMPDIR/src" 2>/dev/null || true)
if [ "${MULTIGIL_FORCE:-0}" = 1 ]; then old_deps=; old_src=; fi

if [ "$old_deps" = "$deps_stamp" ] && [ "$old_src" = "$src_stamp" ] \
   && (cd / && "${RUN[@]}" "$VPY" -c 'import multigil._core') >/dev/null 2>&1; then
  log "up to date ($VENV)"
  exit 0
fi

# Build in a private, fresh directory: no stale modules from an earlier build
# end up in the wheel, and builds with other flags or Pythons never mix.
BUILD_BASE=$(mktemp -d "${TMPDIR:-/tmp}/multigil-build.XXXXXX")
trap 'rm -rf "$BUILD_BASE"' EXIT
export MULTIGIL_BUILD_BASE=$BUILD_BASE

flags="MULTIGIL_STRICT=$MULTIGIL_STRICT MULTIGIL_SANITIZE=$MULTIGIL_SANITIZE"
spec=.
[ -n "$EXTRAS" ] && spec=".[$EXTRAS]"
rm -f "$STAMPDIR/src"
built=0

if [ "$old_deps" != "$deps_stamp" ]; then
  # Full install, build isolation included: this is how a user installs it.
  log "installing $spec ($flags)"
  t0=$(date +%s)
  "$VPY" -m pip uninstall -q -y multigil >/dev/null 2>&1 || true
  "$VPY" -m pip install -q "$spec" || die "pip install '$spec' failed (see above)"
  built=1
  # The build requirements, so that later rebuilds can skip build isolation.
  breqs=$("$VPY" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml","rb"))["build-system"]["requires"]))')
  mapfile -t breqs_a <<<"$breqs"
  "$VPY" -m pip install -q "${breqs_a[@]}" || die "installing build requirements failed"
  printf '%s\n' "$deps_stamp" > "$STAMPDIR/deps"
  log "installed in $(( $(date +%s) - t0 ))s"
fi

# Otherwise (only src/ or the flags changed) rebuild and reinstall just the
# project, without build isolation: a few seconds.
if [ "$built" = 0 ]; then
  log "building and installing multigil ($flags)"
  t0=$(date +%s)
  "$VPY" -m pip install -q --no-deps --force-reinstall --no-build-isolation . \
    || die "building multigil failed (see above)"
  log "built in $(( $(date +%s) - t0 ))s"
fi

# Sanity: the installed package (not src/) imports, extension included.
(cd / && "${RUN[@]}" "$VPY" - "$VENV" <<'EOF'
import os, sys
import multigil, multigil._core
venv = os.path.realpath(sys.argv[1])
where = os.path.realpath(multigil._core.__file__)
if not where.startswith(venv + os.sep):
    sys.exit(f"setup: ERROR: multigil._core was imported from {where}, not from the venv {venv}")
EOF
) || die "the installed multigil does not import (see above)"

printf '%s\n' "$src_stamp" > "$STAMPDIR/src"
log "ready: $VPY (Python $PYVER, $flags)"
