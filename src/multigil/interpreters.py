"""Interpreters with their own GIL, on CPython 3.12 and later.

The same names and meaning as CPython 3.14's :mod:`concurrent.interpreters`
(PEP 734), and more where 3.14 is weak:

* :meth:`Interpreter.call` returns the result, takes any picklable function and
  arguments, and sends lambdas, closures and functions of ``__main__`` by value
  (cloudpickle), so your script is never re-run in the interpreter; an
  exception raised inside raises :class:`ExecutionFailed` here, which
  describes it (its type, message and traceback), as in 3.14;
* a new interpreter starts with the caller's ``sys.path`` (the working
  directory is process-wide anyway);
* queues block on a condition variable: no 10 ms polling, exact float timeouts.

Example::

    from multigil import interpreters

    with interpreters.create() as interp:
        print(interp.call(sum, range(10)))      # 45, computed under another GIL
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, Callable, TypeVar

from . import _compat, _core
from ._core import Queue
from ._errors import (
    ExcInfo,
    ExecutionFailed,
    InterpreterError,
    InterpreterNotFoundError,
    NotShareableError,
    QueueEmpty,
    QueueFull,
    exception_from,
)

__all__ = [
    "Interpreter",
    "create",
    "list_all",
    "get_current",
    "get_main",
    "is_shareable",
    "create_queue",
    "Queue",
    "InterpreterError",
    "InterpreterNotFoundError",
    "ExecutionFailed",
    "NotShareableError",
    "QueueEmpty",
    "QueueFull",
]

T = TypeVar("T")

_BOOTSTRAP = "import sys\nsys.path[:] = {path!r}\nimport multigil._subinit\n"

# One Interpreter object per id, as in concurrent.interpreters.
_cache: weakref.WeakValueDictionary[int, Interpreter] = weakref.WeakValueDictionary()
_cache_lock = threading.Lock()


class Interpreter:
    """A handle on one interpreter, which has its own GIL and its own modules.

    Get one from :func:`create`, :func:`get_current`, :func:`get_main` or
    :func:`list_all`; ``Interpreter(id)`` returns the handle of an existing
    interpreter.  Use it as a context manager to close it at the end.
    """

    __slots__ = ("_id", "_whence", "__weakref__")
    _id: int
    _whence: str

    def __new__(cls, id: int, /, _whence: str | None = None) -> Interpreter:
        if not isinstance(id, int) or isinstance(id, bool):
            raise TypeError(f"interpreter id must be an int, not {type(id).__name__}")
        with _cache_lock:
            self = _cache.get(id)
            if self is not None:
                return self
            if _whence is None:
                status = _core.status(id)
                if status is None:
                    raise InterpreterNotFoundError(f"interpreter {id} does not exist")
                _whence = status[0]
            self = super().__new__(cls)
            self._id = id
            self._whence = _whence
            _cache[id] = self
            return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (Interpreter, (self._id,))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._id})"

    def __hash__(self) -> int:
        return hash(self._id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Interpreter) and other._id == self._id

    def __enter__(self) -> Interpreter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def id(self) -> int:
        """The interpreter's id, as CPython numbers it."""
        return self._id

    @property
    def whence(self) -> str:
        """Where it came from: ``'runtime init'`` for the main interpreter,
        ``'C-API'`` for those multigil created, ``'unknown'`` otherwise."""
        return self._whence

    def is_running(self) -> bool:
        """Whether some thread is running code in it right now: a call made
        from another thread, or a thread the interpreter started itself."""
        status = _core.status(self._id)
        if status is None:
            raise InterpreterNotFoundError(f"interpreter {self._id} was closed")
        busy: int = status[1]
        if self._id == _core.get_current() or busy > 0:
            return True
        if self._whence != "C-API":
            return False  # multigil does not enter interpreters it did not create
        return bool(_core.is_running(self._id))

    def close(self, *, timeout: float | None = 10.0) -> None:
        """Finalise and destroy the interpreter.

        Threads the interpreter started itself (``threading.Thread``,
        ``_thread.start_new_thread``) are waited for, at most `timeout`
        seconds (None: without limit).

        Raises :class:`InterpreterError` if a thread is running in it (close it
        after that call returns), if threads it started still run after
        `timeout` (the message names them; end them first), or if it lends
        buffers to other interpreters; and :class:`InterpreterNotFoundError`
        if it was already closed.
        """
        _core.destroy(self._id, timeout)
        _owned.discard(self._id)

    def prepare_main(self, ns: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None, /,
                     **kwargs: Any) -> None:
        """Bind names in the interpreter's ``__main__`` module, for :meth:`exec`.

        Values cross like call arguments: natively, or pickled.  As in
        :mod:`concurrent.interpreters`: ``ValueError`` if there is nothing to
        bind, :class:`InterpreterError` while code runs in the interpreter,
        :class:`NotShareableError` (and nothing bound) if a value cannot cross.
        """
        values = dict(ns, **kwargs) if ns is not None else kwargs
        if not values:
            raise ValueError("prepare_main() needs at least one name to bind")
        if self.is_running():
            raise InterpreterError(
                f"interpreter {self._id} is running: bind names in its __main__ while no "
                "code runs there (not from a thread that runs in it, nor while another does)")
        failure = _core.set_main_attrs(self._id, values)
        if failure is not None:
            raise exception_from(failure)

    def exec(self, code: str | Callable[[], object], /) -> None:
        """Run source code (or a function taking no arguments) in ``__main__``.

        Like :mod:`concurrent.interpreters`, an uncaught exception raises
        :class:`ExecutionFailed`, whose ``excinfo`` describes it.
        """
        if isinstance(code, str):
            failure = _core.exec(self._id, code)
            if failure is not None:
                raise ExecutionFailed(ExcInfo(failure))
        elif callable(code):
            co = getattr(code, "__code__", None)
            if co is not None and (co.co_argcount or co.co_kwonlyargcount or co.co_flags & 0xC):
                # as the stdlib: positional, keyword-only, *args or **kwargs
                raise ValueError(f"exec() takes a function without parameters, not {code!r}")
            ok, value = _core.call(self._id, code, (), None)
            if not ok:
                raise _call_failure(ok, value)
        else:
            raise TypeError(f"exec() takes source code or a function, not {type(code).__name__}")

    def call(self, callable: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Call ``callable(*args, **kwargs)`` in this interpreter, from this thread,
        and return its result.

        As in :mod:`concurrent.interpreters`, an exception raised inside (also
        ``SystemExit`` and ``KeyboardInterrupt``: they end that call, not this
        program) raises :class:`ExecutionFailed`, whose ``excinfo`` describes
        it: its type, message and traceback.  If the function, an argument or
        the result cannot cross, :class:`NotShareableError` is raised, with
        the error met in the interpreter as its ``__cause__``.
        """
        ok, value = _core.call(self._id, callable, args, kwargs or None)
        if ok:
            return value  # type: ignore[no-any-return]
        if _exiting and ok is not None and value[0] == "SystemExit":
            # The program exits and stopped this call (_close_at_exit): end
            # this thread as quietly as the interpreter's own ones.
            raise SystemExit
        raise _call_failure(ok, value)

    def call_in_thread(self, callable: Callable[..., object], /, *args: Any,
                       **kwargs: Any) -> threading.Thread:
        """Start a thread that calls ``callable(*args, **kwargs)`` in this
        interpreter, and return it.  An exception goes to ``threading.excepthook``."""

        def run() -> None:
            self.call(callable, *args, **kwargs)

        t = threading.Thread(target=run, name=f"multigil-interp-{self._id}")
        t.start()
        return t


def _call_failure(ok: bool | None, raw: tuple[Any, ...]) -> BaseException:
    """What a failed call raises: NotShareableError if something could not
    cross (ok is None), else ExecutionFailed describing what the code raised."""
    return exception_from(raw) if ok is None else ExecutionFailed(ExcInfo(raw))


# Ids of the interpreters created through this module, closed at exit.
_owned: set[int] = set()
_atexit_registered = False
_exiting = False  # the interpreters are being closed at exit


def create() -> Interpreter:
    """Create a new isolated interpreter with its own GIL and return it.

    It starts with the caller's ``sys.path``; close it with
    :meth:`Interpreter.close` (or a ``with`` block).  Interpreters still open
    when the program exits are closed then.
    """
    global _atexit_registered
    _compat.prime_main_interpreter()
    iid: int = _core.create(_BOOTSTRAP.format(path=list(sys.path)))
    _owned.add(iid)
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(_close_all)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(before=_warn_before_fork)
    return Interpreter(iid, "C-API")


def list_all() -> list[Interpreter]:
    """Every interpreter multigil knows of: the main one, those it created, and
    any other interpreter that imported multigil."""
    return [Interpreter(iid, whence) for iid, whence in _core.list_all()]


def get_current() -> Interpreter:
    """The interpreter running this code."""
    iid = _core.get_current()
    status = _core.status(iid)
    return Interpreter(iid, status[0] if status else "unknown")


def get_main() -> Interpreter:
    """The main interpreter."""
    return Interpreter(_core.get_main(), "runtime init")


def is_shareable(obj: object) -> bool:
    """Whether ``obj`` crosses interpreters natively, without pickle: None, bool,
    int, float, complex, str, bytes, bytearray, tuples, lists, dicts, sets and
    frozensets of those, memoryviews, and multigil's queues, shared buffers and
    locks.  Other picklable objects cross too, by pickle."""
    return bool(_core.is_shareable(obj))


def create_queue(maxsize: int = 0) -> Queue:
    """A new cross-interpreter :class:`Queue` (0: unbounded)."""
    return Queue(maxsize)


def _warn_before_fork() -> None:
    """CPython cannot fork a process that has sub-interpreters: the child
    hangs (3.12) or crashes (3.13, 3.14).  Say so before it happens."""
    if _owned:
        import warnings

        warnings.warn(
            f"fork() while {len(_owned)} multigil interpreter(s) exist: CPython's child "
            "process hangs or crashes then (Fatal Python error: PyThreadState_Get). That "
            "includes a ProcessPoolExecutor or multiprocessing.Pool with the 'fork' start "
            "method, the default on Linux before Python 3.14, made while a multigil pool "
            "lives. Pass mp_context=multiprocessing.get_context('forkserver') (or "
            "'spawn'), or let InterpreterPoolExecutor(fallback=\"process\") run the work "
            "that needs processes; or close the interpreters first.",
            RuntimeWarning,
            stacklevel=2,
        )


# At exit, how long threads still running in an interpreter (interrupted with
# SystemExit first) are waited for before the process exits without
# finalising.
_EXIT_TIMEOUT = 5.0


def _close_when_idle(iid: int, timeout: float) -> None:
    """Close interpreter `iid`, waiting at most `timeout` seconds for every
    thread still in it, calls made from other threads included (for an owner
    that knows those are about to leave, as the executor's interrupter)."""
    _core.destroy(iid, timeout, wait_callers=True)
    _owned.discard(iid)


def _close_at_exit(iid: int) -> None:
    """Close interpreter `iid` as the program exits: stop every thread in it
    (SystemExit), wait for them at most ``_EXIT_TIMEOUT`` seconds, and end it
    even if it lends buffers (their memory then stays allocated until the
    process ends, so views of it stay valid).  Raises InterpreterError naming
    the threads that did not stop."""
    try:
        _core.destroy(iid, _EXIT_TIMEOUT, wait_callers=True, interrupt=True,
                      abandon_exports=True)
    except InterpreterNotFoundError:
        pass
    _owned.discard(iid)


def _close_all() -> None:
    """Close every interpreter created here, newest first (at exit)."""
    global _exiting
    _exiting = True
    stuck = []
    try:
        for iid in sorted(_owned, reverse=True):
            try:
                _close_at_exit(iid)
            except InterpreterError as exc:
                stuck.append(str(exc))
    except KeyboardInterrupt:
        _exit_now("Ctrl-C while closing interpreters at exit", interrupted=True)
    if stuck:
        _exit_now("; ".join(stuck))


def _exit_now(reason: str, interrupted: bool = False) -> None:
    """End the process at once, without finalising the runtime.

    For when interpreters cannot be closed at exit (a thread is stuck in a C
    call inside one): CPython's finalisation would then abort the process
    ("remaining subinterpreters", "not the last thread") or crash.  Standard
    streams and logging are flushed first; the exit status is 1, or that of
    a Ctrl-C with `interrupted`.
    """
    print(f"multigil: exiting without finalising: {reason}", file=sys.stderr)
    logging = sys.modules.get("logging")
    for flush in (getattr(logging, "shutdown", None), sys.stdout.flush, sys.stderr.flush):
        try:
            if flush is not None:
                flush()
        except BaseException:  # noqa: BLE001 - exiting anyway
            pass
    if interrupted:
        import signal

        # As Python itself ends on an uncaught KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(1)
