"""The executor: worker threads around one native task queue, and the tasks.

The data flow is drawn at the top of ``multigil/executor.py``.  Each task is a
:class:`_Task` record, owned by the pool from ``submit`` until its outcome
reaches its future; here, how ``pending[tid]`` moves: ``submit`` adds the
task, ``on_start`` turns its future RUNNING (or skips a cancelled one),
``on_done`` pops it and completes the future.  The future itself holds no
reference to the pool's internals: only the one callable that stops its task,
given when a worker starts it.

Each worker is an OS thread that creates its own interpreter (a task starts a
worker unless one is idle, up to max_workers, as ThreadPoolExecutor does; the
workers of a burst are created in parallel, each under its own GIL), runs the
initializer
there, then enters it once and stays inside, in ``_core.Worker.run()``: a task
costs two hand-offs through native memory and no thread switch besides the
worker's own, since the worker completes the future itself.  When ``run()``
returns 'max_tasks' (max_tasks_per_worker) or 'fatal' (a task raised
SystemExit or KeyboardInterrupt), the same thread closes the interpreter and
starts a fresh one (on 3.12 and 3.13, which do not free a closed
interpreter's memory, it resets the interpreter instead: ``_recycle``); when
it returns 'closed' (the pool shut down and the queue is drained) it closes
the interpreter and ends.

Stopping a running task (``cancel(interrupt=True)``, a per-task timeout,
``shutdown(interrupt=True)``, Ctrl-C) goes through :meth:`_Pool.stop_task`:
the future is completed at once and ``Worker.interrupt(tid)`` raises
TaskCancelled inside the task; the worker survives.

Exit: ``threading._register_atexit`` (as the stdlib's thread.py) shuts every
pool down before the interpreter joins its threads: work already submitted is
finished, as with the stdlib executors -- unless the program is ending because
of Ctrl-C (an uncaught KeyboardInterrupt), or Ctrl-C is pressed while exit
waits: then queued tasks are cancelled and running ones interrupted.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
import time
import weakref
from concurrent.futures import CancelledError
from concurrent.futures.thread import BrokenThreadPool
from functools import partial
from typing import Any, Callable, Mapping

from .. import _core, _pickler, _recycle, _remote, interpreters
from .._errors import (ExecutionFailed, InterpreterError, InterpreterImportError,
                      NotShareableError, QueueClosed, exception_from)
from . import _watchdog
from ._future import InterpreterFuture

__all__ = ["BrokenInterpreterPool", "_Pool", "default_max_workers", "NOT_STARTED"]

#: The stages (``_Task.stage``, ``InterpreterFuture.stage``: 'function',
#: 'arguments', 'call', 'result') at which a task fails before any of its own
#: code ran: it may be run again elsewhere.
NOT_STARTED = frozenset({"function", "arguments"})

# Where the stdlib executors log a failed initializer.
LOGGER = logging.getLogger("concurrent.futures")


class BrokenInterpreterPool(BrokenThreadPool):
    """The pool cannot run tasks any more: a worker's initializer failed, or a
    worker interpreter could not be created.  Tasks that had not started fail
    with this error; ``submit`` raises it.  (A ``BrokenThreadPool``, hence a
    ``concurrent.futures.BrokenExecutor``, as the stdlib's.)"""


def default_max_workers() -> int:
    """The CPUs this process may use (``os.process_cpu_count()`` where it exists)."""
    count = getattr(os, "process_cpu_count", os.cpu_count)()
    return count or 1


# The interpreter is exiting: no new work (as in the stdlib's thread.py).
_shutdown = False
_global_lock = threading.Lock()
_live: weakref.WeakSet[_Pool] = weakref.WeakSet()


class _Task:
    """One task of a pool: what the pool knows of it from ``submit`` until its
    outcome reaches the future.  Only the pool reads and writes it."""

    __slots__ = ("tid", "future", "timeout", "chunk", "worker", "deadline", "stop",
                 "started", "ended", "pickled", "stage", "call")

    def __init__(self, tid: int, future: InterpreterFuture, timeout: float | None,
                 chunk: int) -> None:
        self.tid = tid
        self.future = future
        self.timeout = timeout           # seconds it may run, or None
        self.chunk = chunk               # items of a map chunk; 0 for a plain task
        self.worker: Any = None          # the multigil._core.Worker running it, once started
        self.deadline: _watchdog.Deadline | None = None   # its timeout, while it runs
        self.stop: str | None = None     # why the pool stopped it while it ran: 'cancel' | 'timeout'
        self.started = 0.0               # map chunks: perf_counter() when it started, ended
        self.ended = 0.0
        self.pickled = False             # some arguments were pickled (may fail to rebuild)
        # Where it failed, once its outcome came: 'function', 'arguments'
        # (NOT_STARTED: none of its code ran), 'call', 'result'; None: it did not.
        self.stage: str | None = None
        # (fn, args, kwargs), kept for the pool's fallback, which may run
        # the task again elsewhere; None in a pool without one.
        self.call: tuple[Callable[..., Any], Any, dict[str, Any] | None] | None = None

    def timeout_error(self) -> TimeoutError:
        return TimeoutError(f"the task ran longer than its timeout ({self.timeout} s) "
                            "and was interrupted")


def _interrupted() -> CancelledError:
    """What a TaskCancelled that the pool did not send becomes (the task raised it)."""
    return CancelledError("the task was interrupted while it ran")


def _complete(task: _Task, ok: bool | None, value: Any, stage: str | None) -> None:
    """Give the future what the worker sent: ``ok`` True and the result (a map
    chunk: ``(results, excinfo or None)``), False and the excinfo of the error
    met at `stage`, or None and the error met rebuilding the result here."""
    task.stage = stage
    fut = task.future
    if task.stop is not None:
        return  # stopped while it ran: its future is complete already
    if task.chunk:
        task.ended = time.perf_counter()
    if ok is not True:
        fut._mg_complete(exc=_failure(ok, value, stage), stage=stage)
    elif task.chunk:
        results, raw = value
        fut._mg_complete((results, None if raw is None else
                          exception_from(raw, cancelled=_interrupted())))
    else:
        fut._mg_complete(value)


def _failure(ok: bool | None, value: Any, stage: str | None) -> BaseException:
    """The exception of a task that failed at `stage` (see _complete)."""
    if ok is None:
        return _not_shareable("result not shareable: the task's result could not be rebuilt "
                              "in the main interpreter", value)
    exc = exception_from(value, cancelled=_interrupted())
    if stage == "arguments":
        err = _not_shareable("args not shareable: the task's arguments could not be "
                             "rebuilt in the worker interpreter", exc)
        if isinstance(exc, InterpreterImportError):
            err.args = (f"{err}; InterpreterPoolExecutor(fallback=\"process\") runs such "
                        "tasks in a process",)
        return err
    if stage == "result":
        return _not_shareable("result not shareable: the task's result could not be sent "
                              "back from the worker interpreter", exc)
    return exc  # 'function' (an ImportError says it best) or 'call'


def _not_shareable(what: str, cause: BaseException) -> NotShareableError:
    first = str(cause).partition("\n")[0]
    err = NotShareableError(f"{what}: {type(cause).__name__}: {first}" if first else
                            f"{what}: {type(cause).__name__}")
    err.__cause__ = cause
    return err


class _Slot:
    """One worker thread of a pool, and the callbacks its Worker makes.

    on_start and on_done run in the worker's thread, attached to the main
    interpreter for the moment they take.
    """

    __slots__ = ("pool", "worker", "thread", "ended", "tid", "stop", "__weakref__")

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.worker: Any = None
        self.thread: threading.Thread | None = None
        # Set when the thread has closed its last interpreter.  Waited on
        # instead of Thread.join(): on 3.12 a join interrupted by Ctrl-C
        # marks a running thread as stopped, and later joins return at once.
        self.ended = threading.Event()
        self.tid = 0  # the task this worker started last
        # What the future of each task it starts gets as its stop callable:
        # one bound method for all of them, none made per task.
        self.stop = self._stop_task_of

    def _stop_task_of(self, fut: InterpreterFuture) -> bool:
        """Stop `fut`'s task if this worker is still running it."""
        tid = self.tid
        task = self.pool.pending.get(tid)
        if task is None or task.future is not fut:
            return False  # it has ended; this worker may run another one now
        return self.pool.stop_task(tid)

    def _free(self) -> None:
        """This worker has no task now: idle if none is queued, as
        ThreadPoolExecutor's workers count themselves (told before a future
        completes, so that the next submit of a caller that waited for it
        finds this worker idle)."""
        pool = self.pool
        if pool.queue.empty():
            with pool.lock:
                pool.idle += 1

    def on_start(self, tid: int) -> bool:
        pool = self.pool
        task = pool.pending.get(tid)
        if task is None:
            self._free()  # skipped (cancelled)
            return False
        if task.call is not None and pool.fallback.routes(*task.call):
            # Queued before its function was found to refuse interpreters.
            del pool.pending[tid]
            self._free()
            pool.fallback.take(task)
            return False
        task.worker = self.worker
        fut = task.future
        self.tid = tid
        fut._stop = self.stop
        if fut._mg_start():
            fut._mg_ran_in = "interpreter"
            try:
                if task.chunk:
                    task.started = time.perf_counter()
                elif task.timeout is not None:
                    task.deadline = _watchdog.watch(time.monotonic() + task.timeout,
                                                    partial(pool.stop_task, tid, True))
            except BaseException as exc:  # e.g. no thread for the timeout
                pool.pending.pop(tid, None)
                self._free()
                fut._mg_complete(exc=exc)
                return False
            return True
        pool.pending.pop(tid, None)
        self._free()  # skipped (cancelled, or stopped while queued)
        return False

    def on_done(self, tid: int, ok: bool | None, value: Any, stage: str | None) -> None:
        pool = self.pool
        self._free()
        task = pool.pending.pop(tid, None)
        if task is None:
            return
        if task.deadline is not None:
            task.deadline.cancel()
        if (ok is False and stage in NOT_STARTED and task.call is not None
                and task.stop is None and pool.fallback.retry(task, value, stage)):
            return  # nothing of it ran: the fallback runs it
        pool.ran += task.chunk or 1
        try:
            _complete(task, ok, value, stage)
        except BaseException as exc:  # never leave a future unfinished
            task.future._mg_complete(exc=exc)

    def main(self) -> None:
        """The worker thread: interpreters, one after another, until the pool closes."""
        try:
            self._serve()
        finally:
            self.ended.set()
            pool = self.pool
            if pool.fallback is not None and all(s.ended.is_set() for s in pool.slots):
                pool.fallback.close()  # no task comes to it any more

    def _serve(self) -> None:
        pool = self.pool
        interp: interpreters.Interpreter | None = None
        try:
            while not pool.broken:
                if interp is None:
                    try:
                        interp = interpreters.create()
                        if RESET_INSTEAD_OF_CLOSE:
                            interp.call(_recycle.snapshot)
                    except BaseException as exc:
                        pool.set_broken(f"a worker interpreter could not be created: {exc}",
                                        exc)
                        return
                try:
                    try:
                        pool.initialize(interp)
                    except BaseException as exc:
                        LOGGER.critical("Exception in initializer:", exc_info=True)
                        summary = (exc.excinfo.formatted if isinstance(exc, ExecutionFailed)
                                   else f"{type(exc).__name__}: {exc}")
                        pool.set_broken("A worker initializer failed, the interpreter pool "
                                        f"is not usable anymore: {summary}", exc)
                        return
                    interp.call(_remote.adopt_thread, threading.current_thread().name)
                    self.worker = _core.Worker(interp.id, pool.queue, self.on_start,
                                               self.on_done, pool.max_tasks)
                    reason = self.worker.run()
                except BaseException as exc:
                    pool.set_broken(f"a worker failed: {type(exc).__name__}: {exc}", exc)
                    return
                finally:
                    self.worker = None
                if reason == "closed":
                    return
                queue = pool.queue
                if queue.closed and queue.empty():
                    return
                # 'max_tasks' or 'fatal': carry on in a fresh interpreter
                if not _reset(interp):
                    _close(interp)
                    interp = None
        finally:
            if interp is not None:
                _close(interp)


# CPython 3.12 and 3.13 keep the memory of every destroyed interpreter (about
# 2.2 MiB each): there a worker resets its interpreter instead of replacing it
# (multigil._recycle; docs/executor.md says what "fresh" then means).
RESET_INSTEAD_OF_CLOSE = sys.version_info < (3, 14)


def _reset(interp: interpreters.Interpreter) -> bool:
    """Make `interp` fresh again in place, where that is how a worker recycles;
    False if it must be replaced (3.14+, or the reset failed)."""
    if not RESET_INSTEAD_OF_CLOSE:
        return False
    try:
        interp.call(_recycle.reset, list(sys.path))
        # What tasks left in the thread states (contextvars) goes too.
        _core._renew_thread_states(interp.id)
    except BaseException as exc:
        print(f"multigil: could not reset worker interpreter {interp.id}, replacing it: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return False
    return True


# How long a worker waits, when it closes its interpreter, for the threads
# still in it: the pool's interrupter leaving it, threads a task started.
_CLOSE_TIMEOUT = 10.0


def _close(interp: interpreters.Interpreter) -> None:
    try:
        interp.call(_remote.release_thread)
    except Exception:  # noqa: S110 - an interpreter a task broke: closed all the same
        pass
    try:
        if _shutdown:
            # At exit: as the interpreters module would, a moment later.
            interpreters._close_at_exit(interp.id)
        else:
            interpreters._close_when_idle(interp.id, _CLOSE_TIMEOUT)
    except InterpreterError as exc:
        # Threads the tasks started may still run in it, or it lends
        # buffers; the interpreters module closes it at exit.
        print(f"multigil: could not close worker interpreter {interp.id}: {exc}",
              file=sys.stderr)


class _Pool:
    """The state a pool's worker threads share with the executor object.

    Kept apart from the public executor so that the threads do not keep the
    executor alive: when it is garbage collected, the pool shuts down (its
    queue is closed and the workers end once it is drained).
    """

    def __init__(self, max_workers: int, name: str, initializer: Any, initargs: tuple[Any, ...],
                 shared: Mapping[str, Any] | None, max_tasks: int) -> None:
        self.max_workers = max_workers
        self.name = name
        self.initializer = initializer
        self.initargs = initargs
        self.shared = dict(shared) if shared else None
        self.max_tasks = max_tasks
        self.queue = _core.Queue()
        self.pending: dict[int, _Task] = {}
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self.slots: list[_Slot] = []
        # Workers that found the queue empty after a task and were not
        # claimed by a submit since (ThreadPoolExecutor's idle semaphore).
        self.idle = 0
        self.shutdown_flag = False
        self.broken: str | None = None
        self.ran = 0  # tasks (map items) run by the workers
        # Where tasks go that refuse interpreters (a _fallback.Fallback, which
        # the executor sets), or None: those tasks fail.
        self.fallback: Any = None
        with _global_lock:
            _live.add(self)

    # ---------------------------------------------------------------- tasks --

    def check_open(self) -> None:
        """Raise if no task may be submitted now (call with self.lock held)."""
        if self.broken:
            raise BrokenInterpreterPool(self.broken)
        if self.shutdown_flag:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if _shutdown:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    def submit(self, fn: Callable[..., Any], args: Any, kwargs: dict[str, Any] | None,
               timeout: float | None = None, chunk: int = 0) -> _Task:
        """Queue one task (chunk: a map chunk of that many argument tuples)."""
        fallback = self.fallback
        if fallback is not None and fallback.routes(fn, args, kwargs):
            return self._to_fallback(fn, args, kwargs, timeout, chunk)
        fut = InterpreterFuture()
        with self.lock:
            self.check_open()
            tid = next(self.ids)
            task = _Task(tid, fut, timeout, chunk)
            if fallback is not None:
                task.call = (fn, args, kwargs)
            self.pending[tid] = task
        # Encoded outside the lock: pickling runs user code (__reduce__, a
        # __del__ that a collection triggers), which may submit too.
        try:
            task.pickled = _core.submit_task(self.queue, tid, fn, args, kwargs, bool(chunk))
        except QueueClosed:
            # shut down (or broken) while this task was being encoded
            self.pending.pop(tid, None)
            with self.lock:
                self.check_open()
            raise RuntimeError("cannot schedule new futures after shutdown") from None
        except Exception as exc:
            # The function or an argument cannot cross: this task fails,
            # the pool goes on.
            self.pending.pop(tid, None)
            task.stage = "arguments" if _pickler.function_crosses(fn) else "function"
            fut._mg_start()
            fut._mg_complete(exc=exc, stage=task.stage)
            return task
        except BaseException:
            self.pending.pop(tid, None)
            raise
        with self.lock:
            if not self.broken:
                self._adjust_workers(task)
        return task

    def _to_fallback(self, fn: Callable[..., Any], args: Any, kwargs: dict[str, Any] | None,
                     timeout: float | None, chunk: int) -> _Task:
        """A task the fallback runs without an attempt here (its function refuses)."""
        with self.lock:
            self.check_open()
            task = _Task(next(self.ids), InterpreterFuture(), timeout, chunk)
        task.call = (fn, args, kwargs)
        self.fallback.take(task)
        return task

    def _adjust_workers(self, task: _Task) -> None:
        """For a task just queued: claim an idle worker, or start one more if
        fewer than max_workers run, as ThreadPoolExecutor does.  A burst of
        tasks starts its workers at once: each creates its interpreter in
        parallel, under its own GIL.  Called with self.lock held.

        A task that starts a worker is RUNNING from then on: a new thread of
        a ThreadPoolExecutor takes its task at once, this one must create its
        interpreter first, and ``shutdown(cancel_futures=True)`` must not
        cancel the tasks that would have started meanwhile.  Until a worker
        takes it, stopping it (``cancel(interrupt=True)``) just cancels it."""
        if self.idle > 0:
            self.idle -= 1
        elif len(self.slots) < self.max_workers:
            self._start_worker()
            if task.worker is None:  # not taken meanwhile (it was queued unlocked)
                fut = task.future
                fut._stop = partial(self._stop_untaken, task.tid)
                fut._mg_start()

    def _stop_untaken(self, tid: int, fut: InterpreterFuture) -> bool:
        return self.stop_task(tid)

    def start_all(self) -> None:
        """Start every worker now rather than as tasks come."""
        with self.lock:
            self.check_open()
            while len(self.slots) < self.max_workers:
                self._start_worker()

    def _start_worker(self) -> None:
        if self.fallback is not None and not self.slots:
            self.fallback.ready()  # the workers may hand it tasks at exit
        slot = _Slot(self)
        t = threading.Thread(target=slot.main, name=f"{self.name}_{len(self.slots)}")
        slot.thread = t
        self.slots.append(slot)
        try:
            t.start()
        except BaseException as exc:
            slot.ended.set()
            self.broken = f"could not start a worker thread: {exc}"
            raise

    def initialize(self, interp: interpreters.Interpreter) -> None:
        if self.shared:
            interp.prepare_main(self.shared)
        init = self.initializer
        if init is None:
            return
        try:
            if isinstance(init, str):
                interp.exec(init)
            else:
                interp.call(init, *self.initargs)
        except ExecutionFailed as failed:
            raise exception_from(failed)    # the initializer's own error, as for tasks

    # ------------------------------------------------------------- stopping --

    def stop_task(self, tid: int, timed_out: bool = False) -> bool:
        """Stop a running task now: its future is cancelled (or, timed out,
        fails with TimeoutError) and its worker is interrupted.

        False if the task is not running any more.
        """
        task = self.pending.get(tid)
        if task is None:
            return False
        if not task.future._mg_finish_stopped(task.timeout_error() if timed_out else None):
            return False
        task.stop = "timeout" if timed_out else "cancel"
        worker = task.worker
        if worker is None:
            # RUNNING but not taken by a worker yet (_adjust_workers): the
            # worker that takes it skips it, as it does a cancelled task.
            return True
        # The worker made the task current before on_start turned the future
        # RUNNING, so this hits unless the task has just ended.
        try:
            worker.interrupt(tid)
        except InterpreterError:  # the worker's interpreter closed: task over
            pass
        return True

    def set_broken(self, message: str, cause: BaseException | None) -> None:
        """Fail the tasks that have not started and stop taking new ones."""
        with self.lock:
            if self.broken:
                return
            self.broken = message
            # not taken by a worker yet (some RUNNING: see _adjust_workers)
            waiting = [t for t in self.pending.values() if t.worker is None]
            self.queue.close()
        for task in waiting:
            self.pending.pop(task.tid, None)
            err = BrokenInterpreterPool(message)
            err.__cause__ = cause
            task.future._mg_fail_pending(err)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False,
                 interrupt: bool = False) -> None:
        with self.lock:
            self.shutdown_flag = True
            cancel = []
            if cancel_futures or interrupt:
                cancel = [t for t in self.pending.values() if not t.future.running()]
            self.queue.close()
        for task in cancel:
            if task.future.cancel():
                self.pending.pop(task.tid, None)
        if self.fallback is not None:
            self.fallback.shutdown(cancel_futures or interrupt, interrupt)
        if interrupt:
            self.interrupt_running()
        if wait:
            try:
                self.join()
            except KeyboardInterrupt:
                # Ctrl-C while waiting: stop the work, then wait for that.
                self.shutdown(wait=False, cancel_futures=True, interrupt=True)
                self.join()
                raise

    def interrupt_running(self) -> None:
        for task in list(self.pending.values()):
            if task.future.running():
                self.stop_task(task.tid)

    def join(self) -> None:
        """Wait until every worker has closed its interpreter."""
        me = threading.current_thread()
        for slot in list(self.slots):
            if slot.thread is not me:
                slot.ended.wait()
        if self.fallback is not None:
            self.fallback.join()


# ------------------------------------------------------------------- exit --

def _exiting_on_ctrl_c() -> bool:
    last = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    return isinstance(last, KeyboardInterrupt)


def _python_exit() -> None:
    """Shut every pool down before the interpreter joins its threads.

    Submitted work is finished, as with the stdlib executors, unless the
    program ends on Ctrl-C or Ctrl-C is pressed while we wait: then the rest
    is cancelled and running tasks are interrupted, so exit is prompt.
    """
    global _shutdown
    with _global_lock:
        _shutdown = True
        pools = list(_live)
    hurry = _exiting_on_ctrl_c()
    try:
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=hurry, interrupt=hurry)
        for pool in pools:
            pool.join()
    except KeyboardInterrupt:
        try:
            print("multigil: Ctrl-C at exit: interrupting running tasks (Ctrl-C again "
                  "exits at once)", file=sys.stderr)
            for pool in pools:
                pool.shutdown(wait=False, cancel_futures=True, interrupt=True)
            for pool in pools:
                pool.join()
        except KeyboardInterrupt:
            # Workers still run inside their interpreters (a task blocked in
            # C code): the runtime cannot be finalised under them.
            interpreters._exit_now("Ctrl-C again at exit while tasks still ran",
                                   interrupted=True)
    _watchdog.stop()


threading._register_atexit(_python_exit)  # type: ignore[attr-defined]


def _after_fork_in_child() -> None:
    # The worker threads do not exist in the child; their interpreters belong
    # to the parent's process image.  Mark every pool broken.
    global _global_lock
    _global_lock = threading.Lock()
    for pool in list(_live):
        pool.lock = threading.Lock()
        pool.broken = "the pool's workers do not exist in a forked child process"
        pool.slots = []
        pool.idle = 0
        pool.pending.clear()
        pool.fallback = None  # its processes are the parent's


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
