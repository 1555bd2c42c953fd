"""The checking process: imports each module in its own fresh interpreter.

Started by :mod:`.runner` as ``python -c ... FD WALK MODULE [MODULE ...]``.
For each module it writes two JSON lines to file descriptor FD (not to
stdout, which the modules it imports may write to)::

    {"event": "start", "module": "numpy"}
    {"event": "result", "module": "numpy", "status": "refuses", ...}

and ``{"event": "done"}`` at the end. If a module takes the process down, the
runner knows which one from the last ``start`` without a ``result``.

A module given as ``+NAME`` is a target whose submodules are wanted too: if it
is a package that imports, its result carries ``"walk"``, the names of up to
WALK of its submodules (:func:`~.probe.submodules`), for the runner to check.

Each module gets a new isolated interpreter, closed after its check, so that
one module's imports never help or hinder another's. When the import fails
there, it is retried in this process's main interpreter, to tell a module that
is missing or broken everywhere from one that fails only in isolation.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import IO, Any

from .probe import try_import
from .result import Result

__all__ = ["check", "classify", "main"]

# What probe.try_import returns (plain data: it crosses interpreters).
Attempt = dict[str, Any]


def _error_text(outcome: Attempt) -> str:
    message = outcome.get("message") or ""
    return f"{outcome.get('type', 'Exception')}: {message}" if message else str(outcome.get("type"))


def _is_missing(name: str, outcome: Attempt) -> bool:
    # "No module named 'a'" for a check of "a.b.c" means "a.b.c" is missing
    # too; "No module named 'dependency'" means a module that exists is broken.
    if outcome.get("type") != "ModuleNotFoundError":
        return False
    missing = outcome.get("name")
    return isinstance(missing, str) and (name == missing or name.startswith(missing + "."))


def _third_party(extension: str) -> bool:
    return extension.partition(".")[0] not in sys.stdlib_module_names


def classify(name: str, isolated: Attempt, in_main: Callable[[], Attempt]) -> Result:
    """The verdict on module *name* from :func:`~.probe.try_import`'s outcomes.

    Parameters
    ----------
    name : str
        The module.
    isolated : dict
        The outcome in a fresh isolated interpreter.
    in_main : callable
        Returns the outcome in the main interpreter; called only when the
        isolated import failed for a reason other than a refusal.
    """
    refused = [extension for extension, _ in isolated.get("refused", [])]
    if isolated["ok"]:
        shown = [ext for ext in refused if _third_party(ext)]
        reason = "imports in an isolated interpreter"
        if shown:
            noun, it = ("C extensions", "them") if len(shown) > 1 else ("C extension", "it")
            reason = (f"imports, but {noun} {', '.join(shown)} refused to load "
                      f"(the module carried on without {it}: often slower)")
        return Result(name, "ok", reason, refused=refused)

    error = _error_text(isolated)
    detail = isolated.get("traceback")
    refusal = isolated.get("refusal")
    if refusal:
        extension = refusal[0] or (refused[0] if refused else "")
        if extension == name:
            reason = "is a C extension without support for isolated interpreters"
        elif extension:
            reason = f"needs C extension {extension}, which does not support isolated interpreters"
        else:
            reason = f"a C extension it needs does not support isolated interpreters: {refusal[1]}"
        # CPython's one line says it all; numpy's own message runs to a page.
        return Result(name, "refuses", reason, extension=extension or None,
                      error=f"ImportError: {refusal[1]}",
                      refused=refused, detail=detail)

    main = in_main()
    if not main["ok"]:
        main_error = _error_text(main)
        if _is_missing(name, main):
            return Result(name, "missing", f"not found ({main.get('message')})", error=main_error,
                          fails_in_main=True)
        return Result(name, "error", f"{main_error} (fails in the main interpreter too)",
                      error=main_error, refused=refused, detail=main.get("traceback"),
                      fails_in_main=True)
    if refused:
        # The package swallowed the refusal and failed later, differently.
        reason = (f"fails after C extension {refused[0]} refused isolated interpreters: "
                  f"{error}")
        return Result(name, "refuses", reason, extension=refused[0], error=error,
                      refused=refused, detail=detail)
    return Result(name, "error", f"{error} (only in an isolated interpreter)",
                  error=error, detail=detail)


def _call_failure(exc: BaseException) -> Attempt:
    """An outcome for a failure of the call into the interpreter itself (an
    ExecutionFailed describes what was raised in there)."""
    from multigil.interpreters import ExecutionFailed

    info = exc.excinfo if isinstance(exc, ExecutionFailed) else None
    return {
        "ok": False,
        "type": info.type.__name__ if info else type(exc).__name__,
        "message": " ".join((info.msg if info else str(exc)).split()),
        "name": None,
        "refusal": None,
        "refused": [],
        "traceback": (info.errdisplay if info and info.errdisplay
                      else "".join(traceback.format_exception(exc))),
    }


# Set when an interpreter could not be closed: the process must not finalise.
_stuck = False


def check(name: str, walk: int = 0) -> tuple[Result, list[str]]:
    """Check one module: import it in a new isolated interpreter, then close that.

    Returns the verdict and, with *walk*, up to that many names of the
    package's submodules (empty for a module, or one that does not import).
    """
    global _stuck
    from multigil import interpreters

    start = time.perf_counter()
    parts: list[str] = []
    try:
        interp = interpreters.create()
    except Exception as exc:
        result = Result(name, "error", f"could not create an interpreter: {exc}",
                        error=f"{type(exc).__name__}: {exc}")
    else:
        try:
            try:
                isolated = interp.call(try_import, name, walk)
            except Exception as exc:
                isolated = _call_failure(exc)
        finally:
            try:
                interp.close()
            except interpreters.InterpreterError:
                _stuck = True
        result = classify(name, isolated, lambda: try_import(name))
        if result.ok and "submodules" in isolated:
            parts = list(isolated["submodules"])
            result.found = int(isolated["total"])
    result.seconds = round(time.perf_counter() - start, 4)
    return result, parts


def _emit(stream: IO[str], event: str, **fields: Any) -> None:
    stream.write(json.dumps({"event": event, **fields}) + "\n")
    stream.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Check each module named in *argv* (after the descriptor and WALK) and report on it."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print("usage: worker FD WALK MODULE [MODULE ...]", file=sys.stderr)
        return 2
    stream = os.fdopen(int(args[0]), "w", encoding="utf-8", closefd=True)
    limit = int(args[1])
    for item in args[2:]:
        name = item.removeprefix("+")
        _emit(stream, "start", module=name)
        result, parts = check(name, limit if item.startswith("+") else 0)
        _emit(stream, "result", **result.to_dict(), walk=parts)
    _emit(stream, "done")
    stream.close()
    if _stuck:
        # A thread still runs in an interpreter that could not be closed:
        # finalising would hang or abort ("remaining subinterpreters"), and
        # every verdict is already out.
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
