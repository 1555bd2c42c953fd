"""What runs inside the checking interpreter: import one module, describe how it went.

:func:`try_import` runs in a fresh isolated interpreter (and, to tell a missing
module from a broken one, in the main interpreter of the checking process). It
returns plain data only (str, bool, None, lists and dicts of those), which
crosses interpreters natively: an exception object could not.

What refused is learnt from multigil's import guard (:mod:`multigil._subinit`),
active in every interpreter multigil creates: it raises
:class:`multigil.InterpreterImportError` and records every refusal, also those
a package catches and survives.

Standard library only: every checking interpreter imports this module.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["try_import", "refusal_in_chain", "submodules"]

_MAX_TRACEBACK = 8000

# Submodules users do not import: tests, vendored copies, scripts. Names that
# start with "_" (private modules, __main__) are left out too.
_NOT_FOR_USERS = frozenset({"test", "tests", "testing", "conftest", "vendor", "vendored",
                            "externals", "setup"})


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


def _guard() -> Any:
    """multigil's import guard, where this interpreter has one (not the main one)."""
    return sys.modules.get("multigil._subinit")


def refusal_in_chain(exc: BaseException) -> tuple[str, str] | None:
    """The extension that refused, and its own message, if *exc* stems from a refusal.

    Returns ``(extension, message)``, found through the guard's
    :class:`~multigil.InterpreterImportError` in the exception's chain.
    """
    guard = _guard()
    if guard is None:
        return None
    refused = [link for link in _chain(exc) if isinstance(link, guard.InterpreterImportError)]
    names = [link.name for link in refused if link.name]
    if not names:
        return None
    # Several when a package wrapped the extension's error: all name the same
    # extension; the guard recorded its own (one-line) message.
    name = names[-1]
    message = guard.refusals.get(name) or _one_line(str(refused[-1]))
    return name, message


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _for_users(part: str) -> bool:
    return (part.isidentifier() and not part.startswith("_") and part not in _NOT_FOR_USERS
            and not part.startswith("test_") and not part.endswith(("_test", "_tests")))


def submodules(package: str, path: Iterable[str], limit: int) -> tuple[list[str], int]:
    """The submodules of *package* that users import, found without importing them.

    Walks the package's directories (*path*, its ``__path__``) breadth first,
    shortest names first (``PIL.Image`` before ``PIL.BmpImagePlugin`` before
    ``PIL.x.y``: the core of a package tends to have the short names),
    skipping private modules (``_x``, ``__main__``), tests and vendored code.

    Returns
    -------
    names : list of str
        Up to *limit* dotted names.
    total : int
        How many were found (more than *limit* when the list was cut).
    """
    import pkgutil

    found: list[str] = []
    total = 0
    level = [(package, list(path))]
    while level:
        below: list[tuple[str, list[str]]] = []
        for prefix, directories in level:
            for info in sorted(pkgutil.iter_modules(directories),
                               key=lambda i: (len(i.name), i.name)):
                if not _for_users(info.name):
                    continue
                name = f"{prefix}.{info.name}"
                total += 1
                if len(found) < limit:
                    found.append(name)
                # A subpackage's directory, where it has one (not in a zip file).
                where = getattr(info.module_finder, "path", None)
                if info.ispkg and isinstance(where, str):
                    below.append((name, [os.path.join(where, info.name)]))
        if total > 10 * limit:  # enough to say "and many more"
            break
        level = below
    return found, total


def try_import(name: str, walk: int = 0) -> dict[str, Any]:
    """Import module *name* here and describe the outcome.

    Parameters
    ----------
    name : str
        The module.
    walk : int
        If more than 0 and *name* is a package that imports, also list up to
        this many of its submodules (:func:`submodules`).

    Returns
    -------
    dict
        ``ok`` (bool); ``refused``: ``[extension, message]`` pairs for every
        C extension refused while importing (also when the import survived
        them). On success, with *walk*, ``submodules`` and ``total``. On
        failure also ``type`` (qualified exception type), ``message`` (one
        line), ``name`` (``ImportError.name``, else None), ``refusal``
        (``[extension, message]`` from the exception chain, else None) and
        ``traceback`` (formatted, truncated).
    """
    guard = _guard()
    before = set(guard.refusals) if guard is not None else set()

    def refused() -> list[list[str]]:
        if guard is None:
            return []
        return [[ext, message] for ext, message in guard.refusals.items() if ext not in before]

    try:
        module = importlib.import_module(name)
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
            "refused": refused(),
            "traceback": tb,
        }
    outcome: dict[str, Any] = {"ok": True, "refused": refused()}
    path = getattr(module, "__path__", None)
    if walk > 0 and path is not None:
        outcome["submodules"], outcome["total"] = submodules(name, path, walk)
    return outcome
