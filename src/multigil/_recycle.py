"""Resetting an interpreter to the state it started in, instead of replacing it.

CPython 3.12 and 3.13 do not give back the memory of a destroyed interpreter
(about 2.2 MiB each), so an executor that closed a worker's interpreter and
made a new one after every ``max_tasks_per_worker`` tasks grew without bound.
On those versions the worker keeps its interpreter and resets it instead:
:func:`snapshot` runs once, right after the interpreter started (before the
pool's ``shared`` values and initializer), and :func:`reset` takes it back
there.  What "fresh" then means is written in docs/executor.md.

Runs inside the worker's interpreter; imports only the standard library and
``multigil._core``, ``multigil._pickler`` and ``multigil._remote``.
"""

from __future__ import annotations

import gc
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["snapshot", "reset"]

# What the interpreter looked like when it started; set by snapshot().
_modules: dict[str, Any] | None = None
_main: dict[str, Any] = {}
_state: dict[str, Any] = {}

# Attributes of sys that tasks may rebind and that a new interpreter would
# have as they were at start-up.
_SYS_ATTRS = ("stdin", "stdout", "stderr", "displayhook", "excepthook", "breakpointhook",
              "unraisablehook")
# Lists of sys that import uses, restored in place (the import system keeps
# references to the list objects themselves).
_SYS_LISTS = ("meta_path", "path_hooks")


def _register_at_fork(*, before: Any = None, after_in_child: Any = None,
                      after_in_parent: Any = None) -> None:
    """``os.register_at_fork`` of an interpreter that is reset: checks its
    arguments as the original does, and keeps nothing.

    CPython runs the fork handlers of the main interpreter only, so those
    registered in this one would never run; kept, they would keep the modules
    that registered them (random, logging, ...) alive across every reset.
    """
    if before is None and after_in_child is None and after_in_parent is None:
        raise TypeError("At least one argument is required.")
    for name, fn in (("before", before), ("after_in_child", after_in_child),
                     ("after_in_parent", after_in_parent)):
        if fn is not None and not callable(fn):
            raise TypeError(f"'{name}' must be callable, not {type(fn).__name__}")


def snapshot() -> None:
    """Record the interpreter's start-up state (call once, before any task)."""
    global _modules
    import os

    import __main__

    if hasattr(os, "register_at_fork"):
        os.register_at_fork = _register_at_fork

    # Imported by the C core on first need, and cached there: part of start-up.
    from . import _remote  # noqa: F401

    _modules = dict(sys.modules)
    _main.clear()
    _main.update(vars(__main__))
    _state.clear()
    _state["sys"] = {name: getattr(sys, name, None) for name in _SYS_ATTRS}
    _state["lists"] = {name: list(getattr(sys, name)) for name in _SYS_LISTS}
    _state["recursion"] = sys.getrecursionlimit()
    warnings = sys.modules.get("warnings")
    if warnings is not None:
        _state["warnings"] = list(warnings.filters)
    copyreg = sys.modules.get("copyreg")
    if copyreg is not None:
        # Modules register their types' reducers here (re does): those
        # would keep every module that registered one alive.
        _state["copyreg"] = dict(copyreg.dispatch_table)
    import atexit

    _state["atexit"] = atexit._ncallbacks()


def _forget_module(name: str, module: Any) -> None:
    """Drop a module the tasks imported, and its parent package's reference to it."""
    del sys.modules[name]
    parent, _, child = name.rpartition(".")
    if parent and parent in sys.modules and getattr(sys.modules[parent], child, None) is module:
        try:
            delattr(sys.modules[parent], child)
        except (AttributeError, TypeError):
            pass


def reset(path: list[str]) -> int:
    """Take the interpreter back to its snapshot; ``sys.path`` becomes ``path``.

    Returns the number of objects the full collection freed (for tests).
    """
    import __main__

    from . import _core, _pickler

    if _modules is None:
        raise RuntimeError("multigil._recycle.reset() before snapshot()")
    # __main__: the names bound at start-up, with their start-up values.
    main = vars(__main__)
    main.clear()
    main.update(_main)
    # Modules imported since start-up go; those replaced or removed come back.
    for name, module in list(sys.modules.items()):
        if name not in _modules:
            _forget_module(name, module)
    for name, module in _modules.items():
        if sys.modules.get(name) is not module:
            sys.modules[name] = module
    # The import system, as a new interpreter gets it.
    sys.path[:] = path
    for name, saved in _state["lists"].items():
        getattr(sys, name)[:] = saved
    # New finders for every path entry, which list their directories afresh
    # (not importlib.invalidate_caches(): on 3.13 it imports importlib.metadata).
    sys.path_importer_cache.clear()
    for name, value in _state["sys"].items():
        if value is not None:
            setattr(sys, name, value)
    sys.setrecursionlimit(_state["recursion"])
    warnings = sys.modules.get("warnings")
    if warnings is not None and "warnings" in _state:
        warnings.filters[:] = _state["warnings"]
        mutated = getattr(warnings, "_filters_mutated", None)
        if mutated is not None:
            mutated()
    copyreg = sys.modules.get("copyreg")
    if copyreg is not None and "copyreg" in _state:
        copyreg.dispatch_table.clear()
        copyreg.dispatch_table.update(_state["copyreg"])
    import atexit

    if _state["atexit"] == 0:
        # What the tasks' modules registered (logging, ...); none is run.
        atexit._clear()
    # Caches that keep what the tasks made alive.
    linecache = sys.modules.get("linecache")
    if linecache is not None:
        linecache.clearcache()
    _core._forget_functions()
    _pickler.forget()
    for name in ("last_exc", "last_value", "last_type", "last_traceback"):
        if hasattr(sys, name):
            delattr(sys, name)
    return gc.collect()
