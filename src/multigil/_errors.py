"""Exceptions raised by multigil, and how one raised in another interpreter
comes back: :class:`ExcInfo` describes it, :func:`exception_from` rebuilds it.

They live in one small module that imports nothing heavy, because every
interpreter multigil creates imports it (the C core raises these classes).
The description itself is made on the far side by ``multigil._remote.capture``.
"""

from __future__ import annotations

import sys as _sys
from _queue import Empty as _Empty

TYPE_CHECKING = False  # typing is not imported at run time: see the docstring
if TYPE_CHECKING:
    import queue
    from typing import Any, Self

__all__ = [
    "InterpreterError",
    "InterpreterNotFoundError",
    "ExecutionFailed",
    "NotShareableError",
    "QueueEmpty",
    "QueueFull",
    "QueueClosed",
    "TaskCancelled",
    "InterpreterImportError",
    "ExcInfo",
    "exception_from",
]


class InterpreterError(Exception):
    """An interpreter could not be created, used or closed.

    The message names the interpreter and says what to do instead, e.g. close
    an interpreter only after the thread running in it has returned.
    """


class InterpreterNotFoundError(InterpreterError):
    """The interpreter does not exist (any more): it was closed, or never existed."""


class ExecutionFailed(InterpreterError):
    """Code run in another interpreter raised an exception.

    The exception object itself cannot cross interpreters, so what crosses is a
    description of it, kept in :attr:`excinfo`: ``excinfo.type`` (a small
    namespace with ``__name__``, ``__qualname__`` and ``__module__``),
    ``excinfo.msg`` (``str(exc)``), ``excinfo.formatted`` (``"Type: msg"``) and
    ``excinfo.errdisplay`` (the remote traceback, formatted).

    :meth:`~multigil.interpreters.Interpreter.call` and
    :meth:`~multigil.interpreters.Interpreter.exec` raise it, as
    :mod:`concurrent.interpreters` does.  The executor re-raises the original
    exception where it can be rebuilt, with this error as its ``__cause__``.
    """

    def __init__(self, excinfo: ExcInfo) -> None:
        self.excinfo = excinfo
        super().__init__(getattr(excinfo, "formatted", None) or str(excinfo))

    def __reduce__(self) -> tuple[type[Self], tuple[ExcInfo]]:
        return (type(self), (self.excinfo,))

    def __str__(self) -> str:
        text = super().__str__()
        tb = getattr(self.excinfo, "errdisplay", None)
        if tb:
            return f"{text}\n\nUncaught in the interpreter:\n\n{tb.rstrip()}"
        return text


class NotShareableError(ValueError):
    """A value cannot be sent to another interpreter.

    Raised when an argument, result or queue item is neither natively shareable
    nor picklable (cloudpickle is tried too). The message names the type;
    pass something picklable, or a :class:`multigil.SharedBuffer` for raw data.
    """


class QueueEmpty(_Empty):
    """``get_nowait()`` or ``get(timeout=...)`` found no item in a multigil queue."""


class QueueClosed(RuntimeError):
    """The queue was closed: nothing more can be put, and once it is drained, got."""


class TaskCancelled(BaseException):
    """Raised inside a worker to stop a running task (timeout or cancellation).

    It derives from BaseException so that ``except Exception`` in user code does
    not swallow it.
    """


class _TypeInfo:
    """Stands for the exception's type, which cannot cross: its names only."""

    def __init__(self, name: str, qualname: str, module: str) -> None:
        self.__name__ = name
        self.__qualname__ = qualname
        self.__module__ = module

    def __repr__(self) -> str:
        return f"<exception type {self.__module__}.{self.__qualname__}>"


class ExcInfo:
    """A snapshot of an exception raised in another interpreter (``ExecutionFailed.excinfo``)."""

    __slots__ = ("type", "msg", "errdisplay", "_pickled", "_state")

    def __init__(self, raw: tuple[Any, ...]) -> None:
        # raw: what multigil._remote.capture() made of the exception
        name, qualname, module, msg, display, pickled, state = raw
        self.type = _TypeInfo(name, qualname, module)
        self.msg = msg
        self.errdisplay = display
        self._pickled = pickled
        self._state = state

    @property
    def formatted(self) -> str:
        return f"{self.type.__name__}: {self.msg}" if self.msg else self.type.__name__

    def rebuild(self) -> tuple[BaseException | None, str | None]:
        """The original exception, rebuilt here, and None; or None and why it
        cannot be (None too for what is never rebuilt: SystemExit,
        KeyboardInterrupt, and other exceptions that are not ``Exception``).

        Unpickled where that works; else an instance of its class, found here
        by module and qualified name, with its ``args`` and attributes set (as
        tblib does): an ``__init__`` whose arguments are not the exception's
        ``args`` is not called.
        """
        state = self._state
        if state is None:
            return None, None
        why = "it could not be pickled where it was raised"
        if self._pickled is not None:
            import _pickle

            try:
                exc = _pickle.loads(self._pickled)
            except Exception as err:
                why = f"unpickling it failed ({type(err).__name__}: {err})"
            else:
                if isinstance(exc, BaseException):
                    return exc, None
        if isinstance(state, str):
            return None, f"{why}, and {state}"
        t = self.type
        cls, missing = _find_class(t.__module__, t.__qualname__)
        if cls is None:
            return None, f"{why}, and {missing}"
        try:
            import _pickle

            args, attrs = _pickle.loads(state)
            exc = cls.__new__(cls)
            exc.args = args
            for name, value in attrs.items():
                setattr(exc, name, value)
        except Exception as err:
            return None, f"{why}, and building one from its args failed ({type(err).__name__}: {err})"
        return exc, None

    def is_task_cancelled(self) -> bool:
        """Whether it was :class:`TaskCancelled`, the interrupt of a running task."""
        t = self.type
        return t.__qualname__ == TaskCancelled.__qualname__ and t.__module__ == __name__

    def __reduce__(self) -> tuple[Any, ...]:
        t = self.type
        return (ExcInfo, ((t.__name__, t.__qualname__, t.__module__, self.msg,
                           self.errdisplay, self._pickled, self._state),))

    def __repr__(self) -> str:
        return f"ExcInfo({self.formatted!r})"


def _find_class(module: str, qualname: str) -> tuple[type[BaseException] | None, str]:
    """The exception class named so, imported here; or None and what is missing."""
    name = f"{module}.{qualname}"
    if "<locals>" in qualname:
        return None, f"its class {name} is local to a function: define it at module level"
    try:
        __import__(module)
        obj: Any = _sys.modules[module]
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception as err:
        return None, f"its class {name} cannot be found here ({type(err).__name__}: {err})"
    if not (isinstance(obj, type) and issubclass(obj, BaseException)):
        return None, f"{name} is not an exception class here"
    return obj, ""


def exception_from(raw: tuple[Any, ...] | ExecutionFailed,
                   cancelled: BaseException | None = None) -> BaseException:
    """The exception to raise here for one that another interpreter described.

    ``raw`` is what ``multigil._remote.capture`` made of it there (or the
    :class:`ExecutionFailed` made of that).  The original exception where it
    can be rebuilt (:meth:`ExcInfo.rebuild`), with :class:`ExecutionFailed`
    (which holds the remote traceback) as its ``__cause__``; ExecutionFailed
    itself otherwise, with a note that says why, and always for SystemExit and
    KeyboardInterrupt.  ``cancelled``, if given, stands in for
    a :class:`TaskCancelled` (which never crosses as itself), chained the same
    way.
    """
    failed = raw if isinstance(raw, ExecutionFailed) else ExecutionFailed(ExcInfo(raw))
    info = failed.excinfo
    exc, why = ((cancelled, None) if cancelled is not None and info.is_task_cancelled()
                else info.rebuild())
    if exc is None:
        if why:
            failed.add_note(f"multigil: the {info.type.__name__} cannot be rebuilt in this "
                            f"interpreter, so ExecutionFailed stands for it: {why}.")
        return failed
    exc.__cause__ = failed
    return exc


if TYPE_CHECKING:
    # What the module __getattr__ below builds, for type checkers: with only
    # __getattr__ to go on they would see a plain ``type``, which
    # ``except QueueFull:`` rejects.
    class QueueFull(queue.Full):
        """``put_nowait()`` or ``put(timeout=...)`` found a bounded multigil queue full."""


def __getattr__(name: str) -> type:
    # QueueFull derives from queue.Full, which lives in the pure-Python queue
    # module (threading, heapq, ...): built on first use, not at start-up.
    if name == "QueueFull":
        import queue

        class QueueFull(queue.Full):
            """``put_nowait()`` or ``put(timeout=...)`` found a bounded multigil queue full."""

        QueueFull.__module__ = __name__
        globals()["QueueFull"] = QueueFull
        return QueueFull
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class InterpreterImportError(ImportError):
    """A C extension refused to load in an isolated interpreter.

    Raised by multigil's import guard, in every interpreter multigil creates,
    when an extension module lacks support for isolated interpreters
    (single-phase init, or multi-phase init without
    ``Py_MOD_PER_INTERPRETER_GIL_SUPPORTED``), and when a package fails to
    import because one of its extensions did. The message says which module,
    why, who imported it and what to do: run that work in a process
    (``InterpreterPoolExecutor(fallback="process")``), and ``multigil check``
    to see which modules work in interpreters. The error of the extension (or
    of the package that wrapped it) is the ``__cause__``.

    Code that must tell a refusal from any other ``ImportError`` tests
    ``isinstance(exc, InterpreterImportError)`` on the exception or its chain.

    Attributes
    ----------
    name : str or None
        The extension module that refused, such as
        ``"numpy._core._multiarray_umath"``.
    path : str or None
        Its file.
    importer : str or None
        The first module outside the refusing package whose import statement
        led to it, such as ``"mymodule"``; None if no Python code did.
    """

    def __init__(self, *args: object, name: str | None = None, path: str | None = None,
                 importer: str | None = None) -> None:
        super().__init__(*args, name=name, path=path)
        self.importer = importer
