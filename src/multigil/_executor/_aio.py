"""asyncio: awaiting a task, and ``multigil.run`` on a default pool.

``await pool.run(fn, *args)`` submits the task and awaits its future through
:func:`asyncio.wrap_future`.  Cancelling the awaiting coroutine cancels the
task whether it is queued or running (``cancel(interrupt=True)``): the worker
raises TaskCancelled in it and goes on with the next task.
``loop.run_in_executor(pool, fn, *args)`` needs nothing special: it calls
``submit`` and wraps the future the same way.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, TypeVar

if TYPE_CHECKING:
    from ._future import InterpreterFuture

__all__ = ["await_future", "default_pool", "run"]

T = TypeVar("T")


async def await_future(fut: InterpreterFuture) -> Any:
    """Await `fut`; if the awaiting task is cancelled, stop the task too."""
    import asyncio

    try:
        return await asyncio.wrap_future(fut)
    except asyncio.CancelledError:
        fut.cancel(interrupt=True)
        raise


_default: Any = None
_default_lock = threading.Lock()


def default_pool() -> Any:
    """The pool :func:`run` uses, created on first use with the default size
    (one worker per CPU) and shut down at exit like every pool."""
    global _default
    with _default_lock:
        pool = _default
        if pool is None or pool._pool.shutdown_flag or pool._pool.broken:
            from ..executor import InterpreterPoolExecutor

            pool = _default = InterpreterPoolExecutor(thread_name_prefix="multigil-default")
        return pool


async def run(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``await multigil.run(fn, *args, **kwargs)``: run ``fn`` in an interpreter
    of the default pool and return its result."""
    result: T = await await_future(default_pool().submit(fn, *args, **kwargs))
    return result
