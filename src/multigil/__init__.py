"""multigil: many cores for Python, through interpreters that each own a GIL.

The package imports almost nothing up front: every interpreter multigil
creates imports it too, and must start fast.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself is not imported: see the docstring

from ._errors import (
    ExecutionFailed,
    InterpreterError,
    InterpreterImportError,
    InterpreterNotFoundError,
    NotShareableError,
    QueueClosed,
    QueueEmpty,
    TaskCancelled,
)

__version__ = "0.1.0"

__all__ = [
    "ExecutionFailed",
    "InterpreterError",
    "InterpreterImportError",
    "InterpreterNotFoundError",
    "NotShareableError",
    "QueueClosed",
    "QueueEmpty",
    "QueueFull",
    "TaskCancelled",
    "SharedBuffer",
    "Queue",
    "Lock",
    "RLock",
    "Event",
    "Semaphore",
    "Condition",
    "InterpreterPoolExecutor",
    "run",
    "interpreters",
]

_FROM_CORE = {"SharedBuffer", "Queue", "Lock", "RLock", "Event", "Semaphore",
              "BoundedSemaphore", "Condition"}

if TYPE_CHECKING:
    from typing import Any

    from ._errors import QueueFull

    from . import interpreters
    from ._core import (
        BoundedSemaphore as BoundedSemaphore,  # not in __all__, still public
        Condition,
        Event,
        Lock,
        Queue,
        RLock,
        Semaphore,
        SharedBuffer,
    )
    from .executor import InterpreterPoolExecutor, run


def __getattr__(name: str) -> Any:
    if name in _FROM_CORE:
        from . import _core

        return getattr(_core, name)
    if name == "QueueFull":
        from . import _errors

        return _errors.QueueFull
    if name in ("InterpreterPoolExecutor", "run"):
        from . import executor

        return getattr(executor, name)
    if name == "interpreters":
        import importlib

        return importlib.import_module(".interpreters", __name__)
    raise AttributeError(f"module 'multigil' has no attribute {name!r}")
