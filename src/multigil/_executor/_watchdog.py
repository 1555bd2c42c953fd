"""Deadlines: call a function at a time, unless cancelled first.

One thread for the whole process, started on first need, lives in the main
interpreter: it sleeps on a condition until the nearest deadline and calls
what is due there, outside its lock.  It knows nothing of tasks or pools; the
pool uses it for per-task timeouts (``watch`` when a worker starts the task,
``cancel`` when the task ends).

A cancelled entry drops its callback at once, so what the callback refers to
(a task, its future, its result) is freed at once, not at the deadline.  The
empty entry leaves the heap at its deadline, or sooner: when cancelled entries
make up half of the heap, it is rebuilt without them.
"""

from __future__ import annotations

import heapq
import itertools
import os
import sys
import threading
import time
from typing import Callable

__all__ = ["Deadline", "watch", "stop"]

_cond = threading.Condition(threading.Lock())
_heap: list[tuple[float, int, Deadline]] = []
_cancelled = 0  # entries of _heap whose callback is gone
_seq = itertools.count()
_thread: threading.Thread | None = None
_stopping = False

# Below this many entries the heap is never rebuilt: popping is cheap enough.
_COMPACT_MIN = 64


class Deadline:
    """The handle :func:`watch` returns: ``cancel()`` it when it is not needed."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], object] | None) -> None:
        self.callback = callback

    def cancel(self) -> None:
        """Do not call the callback (if it was not called already), and drop it."""
        global _cancelled
        with _cond:
            if self.callback is None:
                return
            self.callback = None
            _cancelled += 1
            if _cancelled > _COMPACT_MIN and 2 * _cancelled > len(_heap):
                _compact()


def watch(deadline: float, callback: Callable[[], object]) -> Deadline:
    """Call ``callback()`` (in the watchdog thread) at `deadline` (time.monotonic()).

    At exit (after :func:`stop`) nothing is called any more.
    """
    global _thread
    with _cond:
        if _stopping:
            return Deadline(None)
        entry = Deadline(callback)
        heapq.heappush(_heap, (deadline, next(_seq), entry))
        if _thread is None:
            _thread = threading.Thread(target=_run, name="multigil-timeouts", daemon=True)
            _thread.start()
        elif _heap[0][2] is entry:
            _cond.notify()
    return entry


def stop() -> None:
    """End the thread (at exit)."""
    global _stopping
    with _cond:
        _stopping = True
        _clear()
        _cond.notify()


def _clear() -> None:
    """Drop every entry (with _cond held, or in a forked child)."""
    global _cancelled
    for _, _, entry in _heap:
        entry.callback = None
    _heap.clear()
    _cancelled = 0


def _compact() -> None:
    """Drop the cancelled entries (with _cond held)."""
    global _cancelled
    _heap[:] = [item for item in _heap if item[2].callback is not None]
    heapq.heapify(_heap)
    _cancelled = 0


def _pop_due(now: float) -> list[Callable[[], object]]:
    """Take the callbacks due at `now` off the heap (with _cond held)."""
    global _cancelled
    due = []
    while _heap and _heap[0][0] <= now:
        entry = heapq.heappop(_heap)[2]
        callback, entry.callback = entry.callback, None
        if callback is None:
            _cancelled -= 1
        else:
            due.append(callback)
    return due


def _run() -> None:
    while True:
        with _cond:
            while not _stopping:
                now = time.monotonic()
                if _heap and _heap[0][0] <= now:
                    break
                _cond.wait(_heap[0][0] - now if _heap else None)
            if _stopping:
                return
            due = _pop_due(time.monotonic())
        _call(due)
        del due  # nothing of theirs stays alive while the thread sleeps


def _call(due: list[Callable[[], object]]) -> None:
    for callback in due:
        try:
            callback()
        except Exception as exc:
            # One failing callback must not stop the deadlines of the others.
            sys.excepthook(type(exc), exc, exc.__traceback__)


def _after_fork_in_child() -> None:
    global _cond, _thread
    _cond = threading.Condition(threading.Lock())
    _clear()
    _thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
