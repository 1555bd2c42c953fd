"""What runs on the far side of a call: pickling functions, describing exceptions,
the frame of a call.

An exception described by :func:`capture` is rebuilt on the near side by
``multigil._errors.exception_from``.

This module is imported in every interpreter that multigil uses, on first
need, so it imports only the standard library (and cloudpickle, lazily).
"""

from __future__ import annotations

import sys

# _pickle, not pickle: the pure-Python pickle module pulls in re, struct and
# more, and every worker imports this module on its first task.
import _pickle

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

ModuleType = type(sys)

__all__ = ["pickle_function", "capture", "main_frame_code"]


def _importable_by_name(fn: Any) -> bool:
    """True if unpickling by name in another interpreter finds this very object."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return False
    if module == "__main__" or "<" in qualname:  # __main__, <lambda>, <locals>
        return False
    mod = sys.modules.get(module)
    if mod is None or (module != "builtins" and getattr(mod, "__spec__", None) is None):
        return False
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return False
    return obj is fn


def _dumps_by_value(obj: Any) -> bytes:
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - cloudpickle is a dependency
        return _pickle.dumps(obj, 5)
    data: bytes = cloudpickle.dumps(obj, protocol=5)  # cloudpickle is untyped
    return data


def pickle_function(fn: Any) -> tuple[bool, bytes | tuple[Any, str]]:
    """Return ``(by_name, pickled)`` for a callable about to cross interpreters.

    Functions importable by name travel as a reference and may be cached by the
    receiver; lambdas, closures and functions of ``__main__`` travel by value
    (cloudpickle), so the user's script is never re-run in a worker.
    """
    if not callable(fn):
        raise TypeError(f"{type(fn).__name__!r} object is not callable")
    # A method of a natively shared object (``queue.put``) crosses as the
    # object and the method's name: the object itself is not picklable.
    owner = getattr(fn, "__self__", None)
    name = getattr(fn, "__name__", None)
    if owner is not None and not isinstance(owner, ModuleType) and isinstance(name, str):
        from . import _core

        if _core.is_shareable(owner) and getattr(owner, name, None) == fn:
            return False, (owner, name)
    try:
        if _importable_by_name(fn):
            return True, _pickle.dumps(fn, 5)
        return False, _dumps_by_value(fn)
    except Exception as exc:
        from ._errors import NotShareableError

        raise NotShareableError(
            f"cannot send the callable {fn!r} (of type {type(fn).__qualname__!r}) to "
            f"another interpreter: {exc}. Use a module-level function or a picklable "
            "callable."
        ) from exc


def capture(exc: BaseException) -> tuple[Any, ...]:
    """Describe ``exc`` as plain data:
    ``(name, qualname, module, msg, traceback, pickled, state)``.

    ``pickled`` is the exception pickled (None if it cannot be); ``state``,
    for an ``Exception``, is its ``args`` and attributes pickled, from which
    the receiver rebuilds an instance of the class when unpickling fails (an
    ``__init__`` whose arguments are not ``args``), or why they cannot be
    pickled (a str).
    """
    import traceback

    tp = type(exc)
    try:
        msg = str(exc)
    except Exception:  # a broken __str__ must not hide the error itself
        msg = f"<unprintable {tp.__name__}>"
    try:
        display = "".join(traceback.format_exception(exc))
    except Exception:
        display = None
    pickled = state = None
    if isinstance(exc, Exception):
        try:
            pickled = _pickle.dumps(exc, 5)
        except Exception:
            pickled = None
        state = _state(exc)
    return (tp.__name__, tp.__qualname__, tp.__module__, msg, display, pickled, state)


def _state(exc: Exception) -> bytes | str:
    """``(args, attributes)`` of ``exc`` pickled, or a str that says which of
    them does not pickle."""
    try:
        return _pickle.dumps((exc.args, getattr(exc, "__dict__", {})), 5)
    except Exception as err:
        reason = f"{type(err).__name__}: {err}"
    for name, value in getattr(exc, "__dict__", {}).items():
        try:
            _pickle.dumps(value, 5)
        except Exception as err:
            return f"its attribute {name!r} cannot be pickled ({type(err).__name__}: {err})"
    return f"its args cannot be pickled ({reason})"


def main_frame_code(invoke: Callable[[], None]) -> Any:
    """Module-level code that calls ``invoke()``, and does nothing else.

    Run with the ``__main__`` dict as its globals and locals, it is the frame
    that C callables (``eval``, ``exec``, ``globals``, ``locals``, ``vars``,
    ``dir``, ...) run in when they are called across interpreters: the C core
    puts ``invoke``, which runs the call, in the place of the code's only
    constant (a name would show in ``__main__``).
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "'str' object is not callable"
        code = compile("''()", "<multigil>", "exec")
    return code.replace(co_consts=tuple(invoke if c == "" else c for c in code.co_consts))
