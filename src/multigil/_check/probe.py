"""What runs inside the checking interpreter: import one module, describe how it went.

:func:`try_import` runs in a fresh isolated interpreter (and, to tell a missing
module from a broken one, in the main interpreter of the checking process). It
returns plain data only (str, bool, None, lists and dicts of those), which
crosses interpreters natively: an exception object could not.

Standard library only: every checking interpreter imports this module.
"""

from __future__ import annotations

import importlib
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["try_import", "is_refusal", "refusal_in_chain"]

# CPython's own words when an extension refuses an isolated interpreter
# (3.12-3.14): "module X does not support loading in subinterpreters",
# "per-interpreter obmalloc does not support single-phase init extension
# modules", and multigil's import guard (multigil._subinit), which wraps them:
# "... without support for isolated interpreters".
_REFUSAL = re.compile(
    r"subinterpreters|per-interpreter|multiple interpreters|without support for isolated",
    re.IGNORECASE,
)
_MODULE_IN_MESSAGE = re.compile(r"module '?([A-Za-z_][\w.]*)'? ")
_MAX_TRACEBACK = 8000


def is_refusal(message: str) -> bool:
    """Whether an ImportError's message says an extension refuses isolated interpreters."""
    return _REFUSAL.search(message) is not None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    # Both links: packages re-raise with "from exc" (__cause__), with "from
    # None" or without "from" (__context__); the original is in one of them.
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def refusal_in_chain(exc: BaseException) -> tuple[str, str] | None:
    """The extension that refused, and CPython's message, if *exc* stems from a refusal.

    Returns ``(extension, message)``; the extension is ``""`` when no
    exception in the chain names it.
    """
    links = [link for link in _chain(exc)
             if isinstance(link, ImportError) and is_refusal(str(link))]
    if not links:
        return None
    # The name: from ImportError.name (multigil's guard sets it), else from
    # the text. The message: CPython's own (short) one where the chain has it,
    # rather than the guard's explanation wrapped around it.
    name = next((link.name for link in links if link.name), "")
    if not name:
        match = next(filter(None, (_MODULE_IN_MESSAGE.search(str(link)) for link in links)), None)
        name = match.group(1) if match else ""
    own = [link for link in links if "isolated interpreter" not in str(link)]
    return name, _one_line(str((own or links)[0]))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _record_refusals(into: list[list[str]]) -> Callable[[], None]:
    """Record every extension refused during an import, even one the module survives.

    Packages such as PyYAML and msgpack catch the ImportError of their C
    extension and fall back to pure Python: the import succeeds, slower. The
    only place that sees such a refusal is multigil's import guard, which
    calls ``multigil._subinit.explain`` for each one; wrapping that function in
    this (throw-away) interpreter records them. Returns the undo function.
    """
    guard = sys.modules.get("multigil._subinit")
    original = getattr(guard, "explain", None)
    if guard is None or original is None:
        return lambda: None

    def explain(name: str, error: BaseException) -> ImportError:
        into.append([name, _one_line(str(error))])
        result: ImportError = original(name, error)
        return result

    guard.explain = explain  # type: ignore[attr-defined]

    def restore() -> None:
        guard.explain = original  # type: ignore[attr-defined]

    return restore


def try_import(name: str) -> dict[str, Any]:
    """Import module *name* here and describe the outcome.

    Returns
    -------
    dict
        ``ok`` (bool); ``refused``: ``[extension, message]`` pairs for every
        C extension refused while importing (also when the import survived
        them). On failure also ``type`` (qualified exception type), ``message``
        (one line), ``name`` (``ImportError.name``, else None), ``refusal``
        (``[extension, message]`` from the exception chain, else None) and
        ``traceback`` (formatted, truncated).
    """
    refused: list[list[str]] = []
    restore = _record_refusals(refused)
    try:
        importlib.import_module(name)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit at import time is a failure too
        tb = "".join(traceback.format_exception(exc))
        if len(tb) > _MAX_TRACEBACK:
            tb = "...\n" + tb[-_MAX_TRACEBACK:]
        kind = type(exc)
        refusal = refusal_in_chain(exc)
        return {
            "ok": False,
            "type": kind.__name__ if kind.__module__ == "builtins"
            else f"{kind.__module__}.{kind.__qualname__}",
            "message": _one_line(str(exc)),
            "name": exc.name if isinstance(exc, ImportError) else None,
            "refusal": list(refusal) if refusal else None,
            "refused": refused,
            "traceback": tb,
        }
    finally:
        restore()
    return {"ok": True, "refused": refused}
