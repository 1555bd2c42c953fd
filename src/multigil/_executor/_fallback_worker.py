"""What a pool's fallback runs where its tasks go: one call, and how it is stopped.

A task that refuses interpreters runs in one of the fallback's processes
(``_processes``; in a Dask worker, in a thread): :func:`outcome`
calls it and describes what happened exactly as a worker interpreter does --
``(True, result, None)`` or ``(False, excinfo, stage)``, the excinfo made by
``multigil._remote.capture`` -- so the pool completes the future the same way
whichever side ran it.

In a process, :func:`run` wraps that call in the bookkeeping that lets the
main process stop it: a :class:`Board` of shared integers, one slot per
process (its pid, the task it runs, when that task started) and a ring of
tasks to stop.  To stop a task, the main process writes its id into the ring
and sends ``SIGUSR1`` to the process whose slot names it; the process's
handler raises :class:`~multigil.TaskCancelled` in the task at its next
bytecode boundary, once, and only if the task is still the one it runs.  A
task whose id is in the ring when it starts (stopped while it was on its way
to the process) is skipped.  Both sides take the board's lock to
write or read a slot's task and the ring together, so a task that starts as
it is stopped is seen by one side or the other.

:func:`serve` is each process's whole life: set up, then one task at a time
from its own pipe, each outcome back on its own pipe (see
``_processes``, the main process's side).  Messages to the main process are
pickled tuples: ``(READY,)`` once set up, ``(SETUP_FAILED, excinfo)``, then
per task ``(DONE, outcome)`` or ``(FAILED, stage, excinfo)``: the task's
arguments could not be rebuilt here, or its result could not be pickled.

This module runs in the fallback's processes: it imports only the standard
library and the bottom of multigil (``_errors``, ``_remote``).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from .._errors import TaskCancelled
from .._remote import capture

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

__all__ = ["Board", "outcome", "init", "run", "serve", "STOP_SIGNAL",
           "READY", "SETUP_FAILED", "DONE", "FAILED"]

#: How the main process interrupts a task in a fallback process (None: it cannot).
STOP_SIGNAL: int | None = getattr(signal, "SIGUSR1", None)

# A slot's cells: the process's pid, the task it runs (0: none), when that
# task started (time.monotonic_ns(), the same clock in every process here).
_PID, _TASK, _START = range(3)
_CELLS = 3

# What a process says to the main process (the first item of a message).
READY, SETUP_FAILED, DONE, FAILED = range(4)


class Board:
    """Integers shared by the main process and its fallback processes.

    Made in the main process with its multiprocessing context; it reaches
    each process as an argument of :func:`serve`.
    """

    def __init__(self, ctx: Any, slots: int) -> None:
        self.slots = slots
        # Stop requests stay in the ring while the task they name may still
        # start: the tasks being written to processes and those running
        # (slots each) at a time; twice that and some to spare.
        self.ring_size = 4 * slots + 8
        # ... and after the ring, how many stops were ever asked for: while
        # none was, a task starts without reading the ring.
        self.asked = _CELLS * slots + self.ring_size
        self.cells = ctx.RawArray("q", self.asked + 1)
        self.lock = ctx.Lock()
        self.next = 0  # where the main process writes the next stop request

    # ------------------------------------------------------ main process --

    def stop(self, tid: int) -> int | None:
        """Ask for task `tid` to be stopped; the pid running it, if one does."""
        cells = self.cells
        ring = _CELLS * self.slots
        with self.lock:
            cells[ring + self.next] = tid
            cells[self.asked] += 1
            self.next = (self.next + 1) % self.ring_size
            for base in range(0, ring, _CELLS):
                if cells[base + _TASK] == tid:
                    return int(cells[base + _PID])
        return None

    def release(self, pid: int) -> None:
        """Free the slot of process `pid`, which has ended."""
        cells = self.cells
        with self.lock:
            for base in range(0, _CELLS * self.slots, _CELLS):
                if cells[base + _PID] == pid:
                    cells[base + _PID] = cells[base + _TASK] = 0

    def started(self, tid: int) -> float | None:
        """When task `tid` started in its process (time.monotonic()), if it runs."""
        cells = self.cells
        for base in range(0, _CELLS * self.slots, _CELLS):
            if cells[base + _TASK] == tid:
                start = cells[base + _START]
                if cells[base + _TASK] == tid:
                    return int(start) / 1e9
        return None

    # ---------------------------------------------------- in the process --

    def claim(self) -> int:
        """This process's slot (-1 if none is free: its tasks cannot be stopped)."""
        cells = self.cells
        with self.lock:
            for base in range(0, _CELLS * self.slots, _CELLS):
                if cells[base + _PID] == 0:
                    cells[base + _PID] = os.getpid()
                    return base
        return -1

    def begin(self, base: int, tid: int) -> bool:
        """Mark `tid` as running in slot `base`; False if it was stopped already."""
        cells = self.cells
        ring = _CELLS * self.slots
        with self.lock:
            if cells[self.asked] and tid in cells[ring:ring + self.ring_size]:
                return False
            cells[base + _START] = time.monotonic_ns()
            cells[base + _TASK] = tid
        return True

    def stopping(self, base: int) -> int:
        """The task of slot `base` if a stop was asked for it, else 0 (the
        signal handler: no lock, which the interrupted code may hold)."""
        cells = self.cells
        tid = cells[base + _TASK]
        ring = _CELLS * self.slots
        if tid and tid in cells[ring:ring + self.ring_size]:
            return int(tid)
        return 0


def _run_chunk(fn: Callable[..., Any], items: list[tuple[Any, ...]]) -> tuple[list[Any], Any]:
    """A map chunk, as a worker interpreter runs it: ``(results, None)``, or
    ``(the results before the item that raised, excinfo)``."""
    results: list[Any] = []
    append = results.append
    try:
        for args in items:
            append(fn(*args))
    except (SystemExit, KeyboardInterrupt, TaskCancelled):
        raise
    except BaseException as exc:
        return results, capture(_from_the_task(exc))
    return results, None


def _from_the_task(exc: BaseException) -> BaseException:
    """`exc` with its traceback starting at the task's function, as in an interpreter."""
    tb = exc.__traceback__
    return exc.with_traceback(tb.tb_next if tb else None)


def outcome(fn: Callable[..., Any], args: Any, kwargs: dict[str, Any] | None,
            chunk: int) -> tuple[bool, Any, str | None]:
    """Call the task here, and say what happened as a worker interpreter
    does: ``(True, result, None)`` (a map chunk: ``(results, excinfo or
    None)``), or ``(False, excinfo, 'call')``.  TaskCancelled propagates."""
    try:
        if chunk:
            return True, _run_chunk(fn, args), None
        return True, (fn(*args, **kwargs) if kwargs else fn(*args)), None
    except TaskCancelled:
        raise
    except BaseException as exc:
        return False, capture(_from_the_task(exc)), "call"


# ------------------------------------------------- the process's own state --

_board: Board | None = None
_slot = -1
_raised = 0          # the task the stop handler last raised TaskCancelled in
_functions: dict[bytes, Callable[..., Any]] = {}   # by-value functions, rebuilt
_FUNCTIONS_KEPT = 256


def init(board: Board | None, shared: dict[str, Any] | None,
         initializer: Any, initargs: tuple[Any, ...]) -> None:
    """Set a fallback process up: take a slot, install the stop handler,
    then set up ``__main__`` as the pool's worker interpreters are
    (``shared``, then the initializer: a callable, by-value pickled bytes or
    source code)."""
    global _board, _slot
    if board is not None and STOP_SIGNAL is not None:
        _board = board
        _slot = board.claim()
        if _slot >= 0:
            signal.signal(STOP_SIGNAL, _on_stop)
    main = sys.modules["__main__"]
    if shared:
        for namespace in _main_globals(main):
            namespace.update(shared)
    if initializer is None:
        return
    if isinstance(initializer, str):
        # in the namespace the script's functions see, where it has one
        exec(compile(initializer, "<initializer>", "exec"), _main_globals(main)[-1])
    else:
        _function(initializer)(*initargs)


def _main_globals(main: Any) -> list[dict[str, Any]]:
    """The namespaces of the script: its module's, and the one its functions
    see.  multiprocessing imports the script in each process with
    ``runpy.run_path`` and copies the result into the module: the script's
    functions keep the namespace they ran in."""
    spaces = {id(main.__dict__): main.__dict__}
    for value in list(vars(main).values()):
        space = getattr(value, "__globals__", None)
        if isinstance(space, dict) and space.get("__name__") == main.__name__:
            spaces.setdefault(id(space), space)
    return list(spaces.values())


def _on_stop(signum: int, frame: Any) -> None:
    global _raised
    board = _board
    if board is None:
        return
    tid = board.stopping(_slot)
    if tid and tid != _raised:
        _raised = tid
        raise TaskCancelled


def _function(payload: Any) -> Callable[..., Any]:
    """The function a task names: itself, or rebuilt from by-value bytes (kept)."""
    if not isinstance(payload, bytes):
        fn: Callable[..., Any] = payload
        return fn
    kept = _functions.get(payload)
    if kept is not None:
        return kept
    import _pickle

    fn = _pickle.loads(payload)
    if len(_functions) >= _FUNCTIONS_KEPT:
        _functions.pop(next(iter(_functions)))
    _functions[payload] = fn
    return fn


def run(tid: int, payload: Any, args: Any, kwargs: dict[str, Any] | None,
        chunk: int) -> tuple[bool | None, Any, str | None]:
    """Run task `tid` in this process: :func:`outcome`, or ``(None, None,
    None)`` when it was stopped (the main process has completed its future)."""
    board, base = _board, _slot
    try:
        try:
            fn = _function(payload)
        except Exception as exc:
            return False, capture(exc), "function"
        if base < 0 or board is None:
            return outcome(fn, args, kwargs, chunk)
        if not board.begin(base, tid):
            return None, None, None
        try:
            return outcome(fn, args, kwargs, chunk)
        finally:
            board.cells[base + _TASK] = 0
    except TaskCancelled:
        if board is not None and base >= 0:
            board.cells[base + _TASK] = 0
        return None, None, None


def _ignore(signum: int, frame: Any) -> None:
    pass


def serve(calls: Any, results: Any, board: Board | None, shared: dict[str, Any] | None,
          initializer: Any, initargs: tuple[Any, ...]) -> None:
    """A fallback process: set up (:func:`init`), then run the tasks that
    come on `calls` until it closes, each outcome sent on `results` (the two
    ends of its pipes, ``multiprocessing`` connections)."""
    from multiprocessing.reduction import ForkingPickler

    dumps, loads = ForkingPickler.dumps, ForkingPickler.loads
    # Ctrl-C reaches every process of the terminal's group: the main process
    # answers it (it stops the tasks here that it wants stopped).  A handler
    # that does nothing, not SIG_IGN, which the task's own subprocesses
    # would inherit.
    signal.signal(signal.SIGINT, _ignore)
    try:
        init(board, shared, initializer, initargs)
    except BaseException as exc:
        results.send_bytes(dumps((SETUP_FAILED, capture(exc))))
        return
    results.send_bytes(dumps((READY,)))
    while True:
        try:
            data = calls.recv_bytes()
        except (EOFError, OSError):
            return  # the main process closed the pipe: no more tasks
        try:
            call = loads(data)
        except BaseException as exc:
            message: Any = (FAILED, "arguments", capture(exc))
        else:
            message = (DONE, run(*call))
            call = None
        data = None  # the task's objects go before the process waits for the next
        try:
            sent = dumps(message)
        except BaseException as exc:  # the result cannot be pickled
            sent = dumps((FAILED, "result", capture(exc)))
        message = None
        results.send_bytes(sent)
