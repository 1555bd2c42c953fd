"""What the C core calls on either side of a call: how a callable crosses
(:func:`function_ref`, from :mod:`multigil._pickler`), describing exceptions
(:func:`capture`), running a map chunk (:func:`run_chunk`).

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

from ._pickler import function_ref

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

__all__ = ["function_ref", "capture", "run_chunk", "adopt_thread", "release_thread"]


def capture(exc: BaseException) -> tuple[Any, ...]:
    """Describe ``exc`` as plain data: ``(name, qualname, module, msg, traceback, pickled)``."""
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
    pickled = None
    if isinstance(exc, Exception):
        try:
            pickled = _pickle.dumps(exc, 5)
        except Exception:
            pickled = None
    return (tp.__name__, tp.__qualname__, tp.__module__, msg, display, pickled)


def run_chunk(fn: Callable[..., Any], items: list[tuple[Any, ...]]) -> tuple[list[Any], Any]:
    """Apply ``fn`` to each argument tuple; ``(results, None)`` or ``(partial, excinfo)``."""
    results: list[Any] = []
    append = results.append
    try:
        for args in items:
            append(fn(*args))
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        return results, capture(exc)
    return results, None


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
