"""What the C core calls on either side of a call: how a callable crosses
(:func:`function_ref`, from :mod:`multigil._pickler`), describing exceptions
(:func:`capture`), the frame C callables run in (:func:`main_frame_code`).

An exception described by :func:`capture` is rebuilt on the near side by
``multigil._errors.exception_from``.

This module is imported in every interpreter that multigil uses, on first
need, so it imports only the standard library and :mod:`multigil._pickler`.
"""

from __future__ import annotations

import sys

# _pickle, not pickle: the pure-Python pickle module pulls in re, struct and
# more, and every worker imports this module on its first task.
import _pickle

from ._errors import ExecutionFailed
from ._pickler import function_ref

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

__all__ = ["function_ref", "capture", "main_frame_code", "adopt_thread", "release_thread"]


def _attempt(make: Callable[[], Any], default: Any) -> Any:
    """``make()``, or `default` if it raises anything at all: the exception
    being described may be hostile (its ``__str__`` raising SystemExit, ...),
    and must not hide itself."""
    try:
        return make()
    except BaseException:  # noqa: BLE001 - see the docstring
        return default


def _display(exc: BaseException, header: str) -> str | None:
    """The traceback, formatted; if the exception defeats ``traceback``, its
    frames alone under `header`."""
    import traceback

    text = _attempt(lambda: "".join(traceback.format_exception(exc)), None)
    if isinstance(text, str):
        return text
    frames = _attempt(lambda: "".join(traceback.format_tb(exc.__traceback__)), "")
    return f"Traceback (most recent call last):\n{frames}{header}\n"


def _message(exc: BaseException) -> str:
    """``str(exc)``; for an ExecutionFailed (a call into a further interpreter
    failed), without the traceback that its str() appends: that traceback is
    in this exception's own, and with it in both, what a call nested N deep
    reports would double at each level."""
    if isinstance(exc, ExecutionFailed):
        return str(exc.args[0]) if exc.args else ""
    return str(exc)


def capture(exc: BaseException) -> tuple[Any, ...]:
    """Describe ``exc`` as plain data:
    ``(name, qualname, module, msg, traceback, pickled, state)``.

    ``pickled`` is the exception pickled (None if it cannot be); ``state``,
    for an ``Exception``, is its ``args`` and attributes pickled, from which
    the receiver rebuilds an instance of the class when unpickling fails (an
    ``__init__`` whose arguments are not ``args``), or why they cannot be
    pickled (a str).  Never fails, whatever the exception does when asked
    for its text, its traceback or its pickle.
    """
    tp = type(exc)
    # Read through `type` itself: a metaclass cannot make these lie or raise.
    name = type.__dict__["__name__"].__get__(tp)
    qualname = type.__dict__["__qualname__"].__get__(tp)
    module = _attempt(lambda: str(type.__dict__["__module__"].__get__(tp)), "builtins")
    msg = _attempt(lambda: _message(exc), None)
    if not isinstance(msg, str):
        msg = f"<unprintable {name}>"
    display = _display(exc, f"{name}: {msg}" if msg else name)
    pickled = state = None
    if isinstance(exc, Exception):
        pickled = _attempt(lambda: _pickle.dumps(exc, 5), None)
        if not isinstance(exc, ExecutionFailed):
            # (An ExecutionFailed unpickles anywhere, and its state would be a
            # second copy of the description it holds: doubling per level of
            # nested calls.)
            state = _attempt(lambda: _state(exc), "its args or attributes cannot be described")
    return (name, qualname, module, msg, display, pickled, state)


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

    # A float, not a str or a small int: the compiler always loads it from
    # co_consts (3.15 has LOAD_COMMON_CONSTANT for '' and None, which the
    # replacement below would not reach).
    placeholder = 1.5e300
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "'float' object is not callable"
        code = compile(f"{placeholder!r}()", "<multigil>", "exec")
    consts = tuple(invoke if type(c) is float and c == placeholder else c
                   for c in code.co_consts)
    if invoke not in consts:
        raise RuntimeError("multigil: this Python compiles the main-frame code without "
                           "constants; calls of eval, exec, globals, ... cannot get a frame")
    return code.replace(co_consts=consts)


def adopt_thread(name: str) -> None:
    """Name the calling thread ``name`` in this interpreter's :mod:`threading`.

    A pool's worker thread was started by the main interpreter; inside its
    own interpreter, threading sees a thread it did not start: a
    ``_DummyThread`` named ``Dummy-N`` (3.13+), or, where threading was first
    imported in that thread, its ``MainThread`` (3.12).  Either is a
    :class:`threading.Thread`; this gives it the worker's name, the same as in
    the main interpreter, for ``current_thread()`` and logging's threadName.
    """
    import threading

    threading.current_thread().name = name


def release_thread() -> None:
    """Before this interpreter is closed by the calling thread: let threading
    forget it now.  On 3.13+ a ``_DummyThread`` unregisters itself when a
    thread-local object of its thread is deleted; left to the end, that
    happens while the interpreter is being torn down, and its ``__del__``
    fails with "Exception ignored in: <function _DeleteDummyThreadOnDel...>".
    """
    threading = sys.modules.get("threading")
    local = getattr(threading, "_thread_local_info", None)
    if local is not None and hasattr(local, "_track_dummy_thread_ref"):
        del local._track_dummy_thread_ref  # its __del__ runs now, while it can
