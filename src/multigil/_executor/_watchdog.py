"""Per-task timeouts: one thread for the whole process, started on first need.

A task scheduled with ``timeout=`` is registered when a worker starts it; if
it is still running at its deadline, its future fails with TimeoutError at
once and the worker is interrupted (TaskCancelled raised in the task), after
which it takes the next task.  The thread lives in the main interpreter, sleeps
on a condition until the nearest deadline, and holds no interpreter of its own.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._future import InterpreterFuture
    from ._pool import _Pool

__all__ = ["watch", "stop"]

_cond = threading.Condition(threading.Lock())
_heap: list[tuple[float, int, InterpreterFuture, _Pool]] = []
_seq = itertools.count()
_thread: threading.Thread | None = None
_stopping = False


def watch(deadline: float, fut: InterpreterFuture, pool: _Pool) -> None:
    """Stop `fut`'s task if it still runs at `deadline` (time.monotonic())."""
    global _thread
    with _cond:
        if _stopping:
            return
        heapq.heappush(_heap, (deadline, next(_seq), fut, pool))
        if _thread is None:
            _thread = threading.Thread(target=_run, name="multigil-timeouts", daemon=True)
            _thread.start()
        elif _heap[0][2] is fut:
            _cond.notify()


def stop() -> None:
    """End the thread (at exit)."""
    global _stopping
    with _cond:
        _stopping = True
        _heap.clear()
        _cond.notify()


def _run() -> None:
    from ._future import timeout_error

    while True:
        expired = []
        with _cond:
            while not _stopping:
                now = time.monotonic()
                if _heap and _heap[0][0] <= now:
                    break
                _cond.wait(_heap[0][0] - now if _heap else None)
            if _stopping:
                return
            now = time.monotonic()
            while _heap and _heap[0][0] <= now:
                expired.append(heapq.heappop(_heap))
        for _, _, fut, pool in expired:
            if fut.running():
                pool._stop_running(fut, "timeout", timeout_error(fut._mg_timeout))
        del expired


def _after_fork_in_child() -> None:
    global _cond, _thread
    _cond = threading.Condition(threading.Lock())
    _heap.clear()
    _thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
