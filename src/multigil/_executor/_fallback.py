"""The fallback: tasks that refuse interpreters run in a process pool instead.

``InterpreterPoolExecutor(fallback="process")`` gives its pool a
:class:`Fallback`.  The pool calls it at three points (the hook in
``_pool.py``; nothing else of the pool knows of it):

* ``submit``: a task that a decision sends to the fallback goes straight
  there (:meth:`Fallback.routes`, :meth:`Fallback.take`);
* a worker starting a task: the same check, for tasks queued before the
  decision was made -- the worker skips them and the fallback takes them;
* a worker reporting a failure at stage ``'function'`` or ``'arguments'``
  (nothing of the task ran) whose error is an extension refusing
  interpreters (:class:`~multigil.InterpreterImportError`):
  :meth:`Fallback.retry` records a decision for the task's function
  (logged once, at INFO) and runs the task again in the fallback.  A
  failure at ``'call'`` or later is never retried: the task's own code ran,
  and a side effect must not run twice.

A decision is kept per function.  When the function itself could not be
rebuilt, all of its tasks go to the fallback; when its arguments could not
(a numpy array), only its tasks whose arguments are not natively shareable
(they would be pickled): ``len(array)`` goes, ``len([1, 2])`` still runs in
an interpreter.

The fallback hands the tasks it was given to its *runner* -- forkserver (or
spawn) processes started on first need (:class:`Processes`, run by
``_processes.ProcessPool``), which take each task at once, or threads of this
process (:class:`Threads`, for Dask's worker processes, which cannot start
processes), which take one per free thread while the others wait in the
fallback's own queue.  The runner reports on each task to its
:class:`_Reply`: the task's future goes from PENDING to RUNNING when the
task is written to a process (with threads: when it is handed to a free
thread), so ``cancel()`` keeps the standard library's meaning;
``cancel(interrupt=True)`` and timeouts stop a task in its process
(``_fallback_worker``).  Outcomes come back in the shape a worker interpreter
reports them and complete the future through the pool's own ``_complete``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import Executor
from functools import partial
from types import FunctionType
from typing import TYPE_CHECKING, Any, Callable, Hashable, NamedTuple

from .. import _core, _pickler
from .._errors import InterpreterImportError, TaskCancelled, exception_from
from . import _fallback_worker, _watchdog
from ._future import InterpreterFuture
from ._pool import _complete, _interrupted, _not_shareable, _Task

if TYPE_CHECKING:
    from ._processes import ProcessPool

__all__ = ["PoolStats", "Fallback", "Processes", "Threads", "refused", "KINDS"]

LOGGER = logging.getLogger("multigil")

#: The values of ``InterpreterPoolExecutor(fallback=...)``.
KINDS = ("process",)


class PoolStats(NamedTuple):
    """Where a pool's tasks ran (``InterpreterPoolExecutor.stats()``); a map
    item counts as one task."""

    #: Tasks that ran in the pool's interpreters.
    interpreter: int
    #: Tasks that ran in the fallback (its processes; in a Dask worker, threads).
    fallback: int
    #: Of those, the tasks that were tried in an interpreter first and refused.
    retried: int
    #: The functions whose tasks go straight to the fallback, by name.
    fallback_functions: tuple[str, ...]


def refused(raw: tuple[Any, ...]) -> bool:
    """Whether the failure a worker described (``_remote.capture``'s tuple)
    is an extension refusing interpreters, or stems from one."""
    if raw[1] == InterpreterImportError.__qualname__ and raw[2] == InterpreterImportError.__module__:
        return True
    link: BaseException | None = exception_from(raw)
    while link is not None:
        if isinstance(link, InterpreterImportError):
            return True
        link = link.__cause__ or link.__context__
    # An exception raised for a refusal (``raise X from err``) keeps its
    # chain only in the remote traceback.
    display = raw[4] or ""
    return f"{InterpreterImportError.__module__}.{InterpreterImportError.__qualname__}:" in display


def decision_key(fn: Any) -> Hashable | None:
    """What a decision is kept under.

    A Python function: its names and where its code starts, so that the
    copies an engine rebuilds for every task (Dask unpickles a lambda once a
    task) share one decision.  A ``functools.partial``: the key of its
    function and its bound arguments, callables among them by their keys (the
    integrations bind the user's function to their runner that way).  Any
    other callable: itself.  None if that cannot be a key.
    """
    if isinstance(fn, FunctionType):
        code = fn.__code__
        return (fn.__module__, fn.__qualname__, code.co_filename, code.co_firstlineno)
    if type(fn) is not partial:
        return fn  # type: ignore[no-any-return]
    key = (decision_key(fn.func),
           tuple(decision_key(a) if callable(a) else a for a in fn.args),
           tuple(sorted(fn.keywords.items())))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _name(fn: Any) -> str:
    """The user's function in `fn`, by name, for the log and the stats."""
    while type(fn) is partial:
        inner = [a for a in fn.args if callable(a)]
        fn = inner[0] if inner else fn.func
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{qualname}" if module else qualname


class _Runner:
    """Where a fallback runs tasks (see the subclasses)."""

    #: What ``InterpreterFuture.ran_in`` says of a task run here.
    kind = ""
    #: Tasks handed over at a time.
    limit = 1
    #: Whether the runner marks a future RUNNING itself, when the task really
    #: starts; else the fallback does when it hands the task over.
    starts_tasks = False

    def payload(self, fn: Any) -> Any:
        """What stands for `fn` in :meth:`submit` (computed once a function)."""
        return fn

    def ready(self) -> None:
        """Get ready to take tasks at exit (the pool's workers start)."""

    def submit(self, task: _Task, reply: _Reply, payload: Any, args: Any,
               kwargs: dict[str, Any] | None) -> None:
        """Start `task`, and tell `reply` how it went: ``_fallback_worker.run``'s
        outcome, or the error that kept the runner from running it."""
        raise NotImplementedError

    def stop(self, tid: int) -> None:
        """Interrupt task `tid` if it runs (its future is complete already)."""

    def started(self, tid: int) -> float | None:
        """When `tid` started (time.monotonic()), while it runs."""
        return None

    def close(self, wait: bool) -> None:
        """Release what runs the tasks (all of them are done)."""


class Processes(_Runner):
    """Processes started with the forkserver method (spawn where there is
    none) on first need: ``fork`` with interpreters alive crashes the
    child.  They are set up as the pool's interpreters are (``shared``, then
    the initializer), and tasks in them can be stopped
    (:class:`_fallback_worker.Board`).  :class:`_processes.ProcessPool` runs
    them."""

    kind = "process"
    # Every task is handed over at once, by the thread that submits it: the
    # process pool writes it to a free process then and there, or keeps it
    # until one is free.
    limit = sys.maxsize
    starts_tasks = True

    def __init__(self, workers: int, initializer: Any, initargs: tuple[Any, ...],
                 shared: dict[str, Any] | None, max_tasks: int = 0) -> None:
        # Imported now, not at the first task: that may come at exit, when
        # the modules it imports can no longer register their exit hooks.
        from . import _processes

        self.make_pool = _processes.ProcessPool
        self.workers = workers
        self.max_tasks = max_tasks  # a process's, as the pool's max_tasks_per_worker
        self.setup = (shared, initializer, initargs)
        self.lock = threading.Lock()
        self.pool: ProcessPool | None = None
        self.board: _fallback_worker.Board | None = None

    def payload(self, fn: Any) -> Any:
        # By name where the process finds it -- a function of the script
        # too, as a ProcessPoolExecutor sends it: each process imports the
        # script as __mp_main__ -- else by value, pickled once here.
        if _in_main_script(fn) or _pickler.importable_by_name(fn):
            return fn
        try:
            return _pickler.dumps(fn)
        except Exception:
            return fn  # pickling the task says why it cannot be sent

    def _pool(self) -> ProcessPool:
        pool = self.pool
        if pool is not None:
            return pool
        with self.lock:
            if self.pool is None:
                import multiprocessing

                if multiprocessing.current_process().daemon:
                    raise RuntimeError(
                        "this process is daemonic (a worker of multiprocessing, or of Dask), and "
                        "a daemonic process cannot start processes; run this work in the "
                        "calling process instead")
                methods = multiprocessing.get_all_start_methods()
                ctx = multiprocessing.get_context(
                    "forkserver" if "forkserver" in methods else "spawn")
                shared, initializer, initargs = self.setup
                if callable(initializer):
                    initializer = self.payload(initializer)
                # The board first: a reader without the lock that sees the
                # pool sees its board.
                self.board = _fallback_worker.Board(ctx, self.workers)
                self.pool = self.make_pool(self.workers, ctx, self.board,
                                           (shared, initializer, initargs), self.max_tasks)
            return self.pool

    def ready(self) -> None:
        # Python 3.12 starts no thread at exit, and the process pool needs
        # its reader thread: a task that the workers hand over while the
        # program exits (one submitted just before) would wait for ever.
        # There, make the pool now (no process starts until a task comes);
        # 3.13+ start the thread at exit all right.
        if sys.version_info < (3, 13):
            self._pool()

    def submit(self, task: _Task, reply: _Reply, payload: Any, args: Any,
               kwargs: dict[str, Any] | None) -> None:
        self._pool().submit(reply, (task.tid, payload, args, kwargs, task.chunk))

    def stop(self, tid: int) -> None:
        board, signum = self.board, _fallback_worker.STOP_SIGNAL
        if board is None or signum is None:
            return
        pid = board.stop(tid)
        if pid:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def started(self, tid: int) -> float | None:
        board = self.board
        return None if board is None else board.started(tid)

    def close(self, wait: bool) -> None:
        with self.lock:
            pool = self.pool
        if pool is not None:
            pool.close(wait)


def _in_main_script(fn: Any) -> bool:
    """Whether `fn` is a function of the script (``__main__``, run from a file
    or with ``-m``) that pickle finds by name in a spawned process, where
    multiprocessing imports the script again."""
    if getattr(fn, "__module__", None) != "__main__":
        return False
    main = sys.modules.get("__main__")
    if getattr(main, "__file__", None) is None and getattr(main, "__spec__", None) is None:
        return False  # python -c, stdin, the REPL: nothing to import there
    obj: Any = main
    for part in str(getattr(fn, "__qualname__", "<")).split("."):
        obj = getattr(obj, part, None)
    return obj is fn


class Threads(_Runner):
    """Threads of this process, made on first need (a Dask worker's process
    cannot start processes).  A running task cannot be interrupted: its
    future is cancelled or times out at once, and the thread is busy until
    the call returns."""

    kind = "thread"

    def __init__(self, workers: int, name: str) -> None:
        self.limit = workers
        self.name = name
        self.lock = threading.Lock()
        self.executor: Executor | None = None
        self.starts: dict[int, float] = {}

    def submit(self, task: _Task, reply: _Reply, payload: Any, args: Any,
               kwargs: dict[str, Any] | None) -> None:
        with self.lock:
            if self.executor is None:
                from concurrent.futures import ThreadPoolExecutor

                self.executor = ThreadPoolExecutor(self.limit, self.name)
            executor = self.executor
        executor.submit(self._call, reply, task.tid, payload, args, kwargs, task.chunk)

    def _call(self, reply: _Reply, tid: int, fn: Callable[..., Any], args: Any,
              kwargs: dict[str, Any] | None, chunk: int) -> None:
        self.starts[tid] = time.monotonic()
        try:
            outcome: tuple[bool | None, Any, str | None] = _fallback_worker.outcome(
                fn, args, kwargs, chunk)
        except TaskCancelled:
            outcome = None, None, None
        except BaseException as exc:  # never leave the future pending
            reply.set_exception(exc)
            return
        finally:
            self.starts.pop(tid, None)
        reply.set_result(outcome)

    def started(self, tid: int) -> float | None:
        return self.starts.get(tid)

    def close(self, wait: bool) -> None:
        with self.lock:
            executor = self.executor
        if executor is not None:
            executor.shutdown(wait=wait)


class _Reply:
    """Where a runner reports how one task went (``_processes.Reply``).  Each
    report leads to :meth:`Fallback._done` once: the first that ends the
    task."""

    __slots__ = ("fallback", "task")

    def __init__(self, fallback: Fallback, task: _Task) -> None:
        self.fallback = fallback
        self.task = task

    def set_running_or_notify_cancel(self) -> bool:
        """The task starts (for processes: it is written to one); False if
        it was cancelled or stopped meanwhile: it is dropped."""
        fut = self.task.future
        if fut._mg_start():
            fut._mg_ran_in = self.fallback.runner.kind
            return True
        self.fallback._done(self.task, None, None, ran=False)
        return False

    def set_result(self, outcome: tuple[bool | None, Any, str | None]) -> None:
        """The task ran: ``_fallback_worker.run``'s outcome."""
        self.fallback._done(self.task, outcome, None)

    def set_exception(self, exc: BaseException, stage: str | None = None) -> None:
        """The runner could not run the task (`stage`: its arguments could
        not be sent, its result could not come back; None: its process died)."""
        self.fallback._done(self.task, None, exc, stage=stage)


# Set while a fallback completes a future in this thread (its done-callbacks
# run then): a shutdown(wait=True) called from one must not wait for itself.
_completing = threading.local()


class Fallback:
    """A pool's fallback: the decisions, the tasks it holds, its runner."""

    # Decisions kept at most (the oldest is dropped first); each holds its
    # function alive.
    KEPT = 1024

    def __init__(self, runner: _Runner) -> None:
        self.runner = runner
        self.lock = threading.Lock()
        # decision key -> [the function's name, all its tasks (else only
        # those with arguments that are not natively shareable), (the last
        # function object met under the key, what stands for it in the
        # runner's submit) or None]
        self.decided: dict[Hashable, list[Any]] = {}
        self.decisions = 0                        # made so far (see _entry)
        self.last: tuple[Any, list[Any] | None, int] = (None, None, 0)
        self.waiting: deque[_Task] = deque()     # taken, not handed over yet
        self.live: dict[InterpreterFuture, _Task] = {}   # taken, not done
        self.handed = 0                           # handed over, not done
        self.done = 0                             # tasks (map items) it ran
        self.retried = 0
        self.closing = False                      # the pool's workers have ended
        self.closed = threading.Event()           # ... and so has every task here

    def ready(self) -> None:
        """The pool's workers start: get the runner ready for tasks at exit
        (a failure here shows when a task needs the runner)."""
        try:
            self.runner.ready()
        except Exception:
            LOGGER.debug("multigil: the %s fallback could not get ready", self.runner.kind,
                         exc_info=True)

    # ------------------------------------------------------- decisions --

    def routes(self, fn: Any, args: Any, kwargs: dict[str, Any] | None) -> bool:
        """Whether the task ``fn(*args, **kwargs)`` goes straight to the fallback."""
        if not self.decided:
            return False
        entry = self._entry(fn)
        if entry is None:
            return False
        return bool(entry[1]) or not (_core.is_shareable(args) and _core.is_shareable(kwargs))

    def _entry(self, fn: Any) -> list[Any] | None:
        """The decision on `fn`, if there is one.  The last function looked
        up is remembered with its entry, valid until the next decision: a
        burst of one function's tasks computes its key once."""
        last = self.last
        if last[0] is fn and last[2] == self.decisions:
            return last[1]
        decisions = self.decisions  # read first: a decision made meanwhile voids the memo
        try:
            key = decision_key(fn)
            entry = None if key is None else self.decided.get(key)
        except TypeError:  # unhashable
            return None
        self.last = (fn, entry, decisions)
        return entry

    def retry(self, task: _Task, raw: tuple[Any, ...], stage: str) -> bool:
        """Take a task whose worker could not rebuild its function or
        arguments (`stage`; `raw`: the error), if an extension refusing
        interpreters is why.  The future is RUNNING (the worker started it)."""
        if not refused(raw):
            return False
        assert task.call is not None
        fn = task.call[0]
        whole = stage == "function"
        key = decision_key(fn)
        with self.lock:
            self.retried += task.chunk or 1
            entry = None if key is None else self.decided.get(key)
            new = key is not None and (entry is None or (whole and not entry[1]))
            if new:
                if entry is None and len(self.decided) >= self.KEPT:
                    self.decided.pop(next(iter(self.decided)))
                self.decided[key] = [_name(fn), whole, None]
                self.decisions += 1
        if new:
            LOGGER.info("multigil: %s of %s run in the %s fallback from now on: %s",
                        "the tasks" if whole else "the tasks with pickled arguments",
                        _name(fn), self.runner.kind, str(raw[3]).partition("\n")[0])
        self.take(task)
        return True

    def functions(self) -> tuple[str, ...]:
        """The names of the functions decided so far, each once (partials of
        one function, with other arguments bound, are decided apart)."""
        with self.lock:
            return tuple(dict.fromkeys(entry[0] for entry in self.decided.values()))

    def _payload(self, fn: Any) -> Any:
        entry = self._entry(fn)
        cached = None if entry is None else entry[2]
        if cached is not None and cached[0] is fn:
            return cached[1]
        payload = self.runner.payload(fn)
        if entry is not None:
            entry[2] = (fn, payload)
        return payload

    # ----------------------------------------------------------- tasks --

    def take(self, task: _Task) -> None:
        """Run `task` here (its future PENDING, or RUNNING after a worker's attempt)."""
        fut = task.future
        fut._stop = self._stop_of
        fut._mg_spin = False
        if self.runner.starts_tasks:  # it takes every task at once
            with self.lock:
                if fut.done():
                    return  # cancelled meanwhile (a later cancel: see _Reply)
                self.live[fut] = task
                self.handed += 1
            self._hand(task)
            return
        with self.lock:
            self.waiting.append(task)
            self.live[fut] = task
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand waiting tasks to the runner while it has room."""
        runner = self.runner
        while True:
            with self.lock:
                if not self.waiting or self.handed >= runner.limit:
                    break
                task = self.waiting.popleft()
                fut = task.future
                if task.stop is not None or not (fut.running() or fut._mg_start()):
                    del self.live[fut]  # stopped, or cancelled while it waited
                    continue
                self.handed += 1
            fut._mg_ran_in = runner.kind
            self._hand(task)
        self._close_if_idle()

    def _hand(self, task: _Task) -> None:
        """Give `task` (counted in `handed`) to the runner."""
        runner = self.runner
        assert task.call is not None
        fn, args, kwargs = task.call
        try:
            if task.chunk:
                task.started = time.perf_counter()
            if task.timeout is not None:
                task.deadline = _watchdog.watch(time.monotonic() + task.timeout,
                                                partial(self._check_deadline, task))
            runner.submit(task, _Reply(self, task), self._payload(fn), args, kwargs)
        except BaseException as exc:  # never leave the future pending
            self._finish(task)
            err = RuntimeError(f"the {runner.kind} fallback could not run the task: {exc}")
            err.__cause__ = exc
            task.future._mg_complete(exc=err)

    def _finish(self, task: _Task, ran: bool = True) -> bool:
        """Forget a handed-over task; False if it was forgotten already."""
        with self.lock:
            if self.live.pop(task.future, None) is None:
                return False
            self.handed -= 1
            if ran:
                self.done += task.chunk or 1
        if task.deadline is not None:
            task.deadline.cancel()
        return True

    def _done(self, task: _Task, outcome: tuple[bool | None, Any, str | None] | None,
              exc: BaseException | None, ran: bool = True, stage: str | None = None) -> None:
        """The runner's report on `task` (from its thread: for processes,
        their reader thread): `outcome`, or `exc` met at `stage`, or neither
        if it did not run the task (`ran` false: its future is done already)."""
        if not self._finish(task, ran):
            return
        if ran:
            _completing.active = True
            try:
                self._complete(task, outcome, exc, stage)
            except BaseException as err:  # never leave a future unfinished
                task.future._mg_complete(exc=err)
            finally:
                _completing.active = False
        if self.waiting:
            self._dispatch()
        else:
            self._close_if_idle()

    def _complete(self, task: _Task, outcome: tuple[bool | None, Any, str | None] | None,
                  exc: BaseException | None, stage: str | None) -> None:
        if exc is not None:
            if task.stop is None:
                if stage is not None:
                    exc = _not_shareable(
                        "args not shareable: the task's arguments could not be sent to the "
                        "fallback's process" if stage == "arguments" else
                        "result not shareable: the task's result could not be sent back from "
                        "the fallback's process", exc)
                task.future._mg_complete(exc=exc, stage=stage)
            return
        assert outcome is not None
        ok, value, stage = outcome
        if ok is None:  # interrupted: by the pool (its future is complete), or by itself
            if task.stop is None:
                task.future._mg_complete(exc=_interrupted(), stage="call")
            return
        _complete(task, ok, value, stage)

    # -------------------------------------------------------- stopping --

    def _stop_of(self, fut: InterpreterFuture) -> bool:
        """The stop callable of the futures of this fallback's tasks."""
        with self.lock:
            task = self.live.get(fut)
        return task is not None and self.stop_task(task)

    def stop_task(self, task: _Task, timed_out: bool = False) -> bool:
        """Complete a running task's future now (cancelled, or failed with
        TimeoutError) and interrupt it where it runs."""
        if not task.future._mg_finish_stopped(task.timeout_error() if timed_out else None):
            return False
        task.stop = "timeout" if timed_out else "cancel"
        if task.deadline is not None:
            task.deadline.cancel()
        self.runner.stop(task.tid)
        return True

    def _check_deadline(self, task: _Task) -> None:
        """A task's timeout counts from when it started in its process."""
        if task.stop is not None or task.future.done():
            return
        now = time.monotonic()
        start = self.runner.started(task.tid)
        assert task.timeout is not None
        if start is not None and start + task.timeout <= now:
            self.stop_task(task, timed_out=True)
            return
        # Not started yet (it waits for a process), or not due yet.
        due = now + task.timeout if start is None else start + task.timeout
        task.deadline = _watchdog.watch(due, partial(self._check_deadline, task))

    def shutdown(self, cancel: bool, interrupt: bool) -> None:
        """The pool shuts down: cancel the tasks not handed over (`cancel`),
        stop all of them (`interrupt`)."""
        with self.lock:
            tasks = list(self.live.values())
        for task in tasks:
            if cancel and task.future.cancel():
                continue
            if interrupt:
                self.stop_task(task)

    def close(self) -> None:
        """No task comes any more (the pool's workers have ended): release the
        runner once the tasks here are done."""
        with self.lock:
            self.closing = True
        self._close_if_idle()

    def _close_if_idle(self) -> None:
        if not self.closing:
            return
        with self.lock:
            if not self.closing or self.live or self.closed.is_set():
                return
            self.closed.set()
        self.runner.close(wait=False)

    def join(self) -> None:
        """Wait until every task here is done and the runner released
        (:meth:`close` first)."""
        self.close()
        if getattr(_completing, "active", False):
            return  # a done-callback of ours called shutdown(wait=True)
        self.closed.wait()
        self.runner.close(wait=True)
