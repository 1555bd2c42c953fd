"""InterpreterPoolExecutor: a :mod:`concurrent.futures` executor whose workers
are interpreters with their own GIL (PEP 684), so CPU-bound Python runs on
every core of one process.

::

  main interpreter                                         worker interpreters
  ────────────────                                         ───────────────────
  submit(fn, *args)                                         thread 1 ── Worker.run() ─┐
    │ task (future, ...) → pending[tid]                     thread 2 ── Worker.run() ─┤
    │ _core.submit_task(queue, tid, fn, args)                 ...                     │
    └──► encoded task ──────────► _core.Queue ─────────────► (each worker takes the  │
                                  (native, one per pool)      next task it is free for)
                                                                                      │
  on_start(tid) ◄── the worker thread attaches to main for a moment ◄─────────────────┤
    │ PENDING → RUNNING (False: cancelled, skip it)                                   │
    │                                                           runs fn(*args) ◄──────┤
  on_done(tid, ok, value) ◄── same thread, result rebuilt in main ◄───────────────────┘
    │ set_result / set_exception; callbacks run here
    ▼
  future.result()

  map(fn, items)  ──► chunks of argument tuples, one task each ──► (results, error)

Each worker is an OS thread that creates its own interpreter (a task starts
a worker unless one is idle, up to max_workers, as in ThreadPoolExecutor: a
burst of tasks starts them in parallel), runs the initializer there, and then
stays inside it, taking tasks from the pool's one native queue.  See ``multigil/_executor/`` for the parts, and docs/executor.md.

Example::

    from multigil import InterpreterPoolExecutor

    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    with InterpreterPoolExecutor() as pool:
        print(list(pool.map(fib, [25] * 8)))      # on every core

    # asyncio
    result = await pool.run(fib, 30)
    async for r in pool.amap(fib, range(20)): ...
    result = await multigil.run(fib, 30)           # a default pool
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ._errors import TaskCancelled
from ._executor import _chunks, _fallback
from ._executor._fallback import PoolStats
from ._executor._future import InterpreterFuture
from ._executor._pool import BrokenInterpreterPool, _Pool, default_max_workers

__all__ = [
    "InterpreterPoolExecutor",
    "InterpreterFuture",
    "BrokenInterpreterPool",
    "TaskCancelled",
    "PoolStats",
    "run",
    "default_pool",
]

T = TypeVar("T")

_counter = itertools.count()


class InterpreterPoolExecutor(ThreadPoolExecutor):
    """An executor that runs each call in one of a pool of interpreters, each
    with its own GIL: Python code runs in parallel on several cores.

    A :class:`~concurrent.futures.ThreadPoolExecutor`, as Python 3.14's
    ``InterpreterPoolExecutor`` is (each worker is a thread that runs in its
    own interpreter), so that code which asks for one, such as asyncio's
    ``loop.set_default_executor``, takes it; every method is its own.

    Arguments as :class:`concurrent.futures.ThreadPoolExecutor` (and
    Python 3.14's ``InterpreterPoolExecutor``):

    max_workers
        How many interpreters (each with one thread).  Default: the CPUs this
        process may use.
    thread_name_prefix
        Names of the worker threads.
    initializer, initargs
        ``initializer(*initargs)`` runs in each new worker interpreter before
        it takes tasks; it may also be a string of source code, run in the
        interpreter's ``__main__``.  If it raises, the pool is broken: tasks
        not started fail with :class:`BrokenInterpreterPool`, and so does
        ``submit``.
    shared
        A mapping of names to values bound in each worker's ``__main__``
        before the initializer runs.
    max_tasks_per_worker
        Give a worker a fresh interpreter after it ran this many tasks (a
        map chunk counts as one): a new one, or on 3.12 and 3.13, whose
        closed interpreters are never freed, the same one reset to its
        start-up state (docs/executor.md, "Fresh workers").  Default: never.
    fallback
        ``"process"``: a task whose function or arguments need a C extension
        that refuses interpreters (numpy, ...) runs in a process instead
        -- a forkserver ``ProcessPoolExecutor`` of ``max_workers`` processes,
        made on first need -- with the same future.  Only a task that failed
        before any of its code ran is run again; from then on, the tasks of
        that function go straight to the processes (``future.ran_in``,
        :meth:`stats`).  Default None: such a task fails with an error that
        names the module.

    Functions and arguments cross interpreters natively or by pickle;
    lambdas, closures and functions of ``__main__`` travel by value
    (cloudpickle), once, and run in the worker's own ``__main__``: they see
    what ``initializer`` and ``shared`` bound there, as in a process pool.

    The attributes that code written for ``ThreadPoolExecutor`` reads are
    there too: ``_max_workers``, ``_thread_name_prefix``, ``_threads`` (the
    worker threads started so far), ``_broken`` (False, or why the pool is
    broken) and ``_shutdown``.
    """

    BROKEN = BrokenInterpreterPool

    def __init__(self, max_workers: int | None = None, thread_name_prefix: str = "",
                 initializer: Callable[..., object] | str | None = None,
                 initargs: tuple[Any, ...] = (), *,
                 shared: Mapping[str, Any] | None = None,
                 max_tasks_per_worker: int | None = None,
                 fallback: str | None = None) -> None:
        if max_workers is None:
            max_workers = default_max_workers()
        elif not isinstance(max_workers, int) or isinstance(max_workers, bool):
            raise TypeError("max_workers must be an integer or None")
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer) and not isinstance(initializer, str):
            raise TypeError("initializer must be a callable or a string of source code")
        if isinstance(initializer, str):
            if initargs:
                raise ValueError("an initializer script takes no initargs")
            compile(initializer, "<initializer>", "exec")
        if max_tasks_per_worker is not None:
            if not isinstance(max_tasks_per_worker, int) or isinstance(max_tasks_per_worker, bool):
                raise TypeError("max_tasks_per_worker must be an integer or None")
            if max_tasks_per_worker <= 0:
                raise ValueError("max_tasks_per_worker must be >= 1")
        if fallback is not None and fallback not in _fallback.KINDS:
            raise ValueError(f"fallback must be None or 'process', not {fallback!r}")
        name = thread_name_prefix or f"InterpreterPoolExecutor-{next(_counter)}"
        # ThreadPoolExecutor.__init__ is not called: its queue and threads
        # are not used; these are its attributes that other code reads.
        self._max_workers = max_workers
        self._thread_name_prefix = name
        self._pool = _Pool(max_workers, name, initializer, tuple(initargs), shared,
                           max_tasks_per_worker or 0)
        if fallback == "process":
            self._pool.fallback = _fallback.Fallback(_fallback.Processes(
                max_workers, initializer, tuple(initargs), self._pool.shared,
                max_tasks_per_worker or 0))
        # Dropping the executor shuts the pool down (the workers end once the
        # work already queued is done), as with the stdlib executors.
        fin = weakref.finalize(self, self._pool.shutdown, False)
        fin.atexit = False

    def __repr__(self) -> str:
        p = self._pool
        state = "broken" if p.broken else "shut down" if p.shutdown_flag else "running"
        return f"<{type(self).__name__} {p.name!r} max_workers={self._max_workers} {state}>"

    @property
    def max_workers(self) -> int:
        """How many worker interpreters the pool runs."""
        return self._max_workers

    @property
    def _threads(self) -> set[threading.Thread]:  # type: ignore[override]
        # ThreadPoolExecutor's: the worker threads started so far.
        return {slot.thread for slot in self._pool.slots if slot.thread is not None}

    @property
    def _broken(self) -> str | bool:  # type: ignore[override]
        # ThreadPoolExecutor's: False, or the message of the broken pool.
        return self._pool.broken or False

    @property
    def _shutdown(self) -> bool:  # type: ignore[override]
        return self._pool.shutdown_flag

    @property
    def fallback(self) -> str | None:
        """Where tasks that refuse interpreters run: ``'process'``, or None (they fail)."""
        fallback = self._pool.fallback
        return None if fallback is None else str(fallback.runner.kind)

    def stats(self) -> PoolStats:
        """Where the pool's tasks ran so far: ``interpreter`` and ``fallback``
        count the tasks (map items) that ran in each, ``retried`` those of
        them tried in an interpreter first, ``fallback_functions`` names the
        functions whose tasks go straight to the fallback."""
        p = self._pool
        fallback = p.fallback
        if fallback is None:
            return PoolStats(p.ran, 0, 0, ())
        return PoolStats(p.ran, fallback.done, fallback.retried, fallback.functions())

    # ---------------------------------------------------------- submitting --

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> InterpreterFuture:
        """Schedule ``fn(*args, **kwargs)`` and return its future.

        If ``fn`` or an argument cannot be sent to an interpreter, the future
        fails with :class:`~multigil.NotShareableError` naming the type.
        """
        return self._pool.submit(fn, args, kwargs or None).future

    def schedule(self, fn: Callable[..., T], /, args: Iterable[Any] = (),
                 kwargs: Mapping[str, Any] | None = None, *,
                 timeout: float | None = None) -> InterpreterFuture:
        """:meth:`submit` with options: ``fn(*args, **kwargs)``, stopped if it
        runs longer than ``timeout`` seconds.

        The time counts from when a worker starts the task, not from when it
        was queued.  When it runs out, the future fails with
        :class:`TimeoutError` at once and the task is interrupted (TaskCancelled
        is raised inside it); the worker then takes the next task.
        """
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError("timeout must be a number of seconds or None")
            if not timeout >= 0:
                raise ValueError("timeout must be >= 0")
            timeout = float(timeout)
        return self._pool.submit(fn, tuple(args), dict(kwargs) if kwargs else None, timeout).future

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int | None = None, buffersize: int | None = None, ordered: bool = True,
            progress: bool | Mapping[str, Any] = False) -> Iterator[T]:
        """Return an iterator of ``fn(*args)`` for ``args`` in ``zip(*iterables)``.

        As :meth:`concurrent.futures.Executor.map`: the inputs are collected
        at once (unless ``buffersize`` is given), the results come in input
        order, an item whose call raised raises when reached, and the iterator
        raises TimeoutError if a result is not available ``timeout`` seconds
        after the call to map.  And:

        chunksize
            Items sent to a worker as one task.  Default: chosen from the
            input's length -- ``ceil(n / (4 * max_workers))``, at most 4096 --
            which is what makes tiny functions fast.  Pass 1 for calls that
            take long and vary.
        buffersize
            Read the inputs lazily, keeping at most this many items submitted
            and not yet yielded (Python 3.14's ``buffersize``); chunk sizes
            then adapt to how long an item takes.
        ordered
            False: yield results as they are ready (a chunk's results
            together, in order), not in input order.
        progress
            True, or a dict of tqdm options: show a tqdm progress bar
            (``pip install 'multigil[progress]'``).
        """
        end_time = None if timeout is None else timeout + time.monotonic()
        done_q: queue.SimpleQueue[InterpreterFuture] | None = None if ordered else queue.SimpleQueue()
        run_ = _chunks.MapRun(self._pool, fn, iterables, chunksize=chunksize,
                              buffersize=buffersize, progress=progress,
                              notify=None if done_q is None else done_q.put)
        return _chunks.iterate(run_, end_time, done_q, self)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False,
                 interrupt: bool = False) -> None:
        """Stop taking tasks, and free the workers once the queued ones are done.

        As in the standard library: ``wait`` waits for the workers to end;
        ``cancel_futures`` cancels the tasks that have not started.  And
        ``interrupt`` (implies ``cancel_futures``) also stops the tasks that
        are running: TaskCancelled is raised in them and their futures are
        cancelled.
        """
        self._pool.shutdown(wait, cancel_futures, interrupt)

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        # Leaving the block on Ctrl-C stops the work instead of waiting for it.
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self.shutdown(wait=True, cancel_futures=True, interrupt=True)
        else:
            self.shutdown(wait=True)

    # ------------------------------------------------------------- asyncio --
    # (all of asyncio is in this module: these two methods, and below them
    # _await, _aiterate, default_pool and run)

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``await pool.run(fn, *args, **kwargs)``: the result of ``fn`` run in a
        worker.  Cancelling the awaiting task cancels the call, queued or
        running (the worker is interrupted and survives)."""
        result: T = await _await(self._pool.submit(fn, args, kwargs or None).future)
        return result

    def amap(self, fn: Callable[..., T], *iterables: Iterable[Any], chunksize: int | None = None,
             buffersize: int | None = None, ordered: bool = True,
             progress: bool | Mapping[str, Any] = False) -> AsyncIterator[T]:
        """``async for result in pool.amap(fn, items)``: :meth:`map` for asyncio.

        The tasks are submitted when iteration starts.  Cancelling the task
        that iterates (or leaving the loop) cancels the chunks not started;
        cancelling also interrupts those running.
        """
        pool = self._pool

        def factory(notify: Callable[[Any], object] | None) -> _chunks.MapRun:
            return _chunks.MapRun(pool, fn, iterables, chunksize=chunksize, buffersize=buffersize,
                                  progress=progress, notify=notify)

        return _aiterate(factory, ordered, self)


# ---------------------------------------------------------------- asyncio --
# ``await pool.run(fn, *args)`` submits the task and awaits its future through
# asyncio.wrap_future.  Cancelling the awaiting coroutine cancels the task
# whether it is queued or running (``cancel(interrupt=True)``): the worker
# raises TaskCancelled in it and goes on with the next task.
# ``loop.run_in_executor(pool, fn, *args)`` needs nothing special: it calls
# ``submit`` and wraps the future the same way.  asyncio is imported where it
# is used: importing the executor does not import it.

async def _await(fut: InterpreterFuture) -> Any:
    """Await `fut`; if the awaiting task is cancelled, stop the task too."""
    import asyncio

    try:
        return await asyncio.wrap_future(fut)
    except asyncio.CancelledError:
        fut.cancel(interrupt=True)
        raise


async def _aiterate(run_factory: Callable[[Callable[[Any], object] | None], _chunks.MapRun],
                    ordered: bool, keepalive: object = None) -> AsyncIterator[Any]:
    """:func:`multigil._executor._chunks.iterate` for asyncio: the chunks are
    sent when iteration starts.

    Cancelling the task that iterates cancels the chunks not started and
    interrupts those running.  `keepalive` (the executor) lives as long as
    the iterator.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    aq: asyncio.Queue[InterpreterFuture] | None = None if ordered else asyncio.Queue()

    def notify(fut: InterpreterFuture) -> None:
        try:
            loop.call_soon_threadsafe(aq.put_nowait, fut)  # type: ignore[union-attr]
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    run = run_factory(None if aq is None else notify)
    try:
        while run:
            if aq is None:
                fut = run.head()
                if not fut.done():
                    try:
                        await asyncio.wrap_future(fut)
                    except asyncio.CancelledError:
                        task = asyncio.current_task()
                        if not fut.cancelled() or (task is not None and task.cancelling()):
                            raise
                    except Exception:
                        pass  # consume() gives it out in order
            else:
                fut = await aq.get()
                if fut not in run.live:
                    continue
            results = run.consume(fut)
            del fut
            n = len(results)
            items = _chunks.handing_out(results)
            del results
            for _ in range(n):
                yield next(items)
            del items
            run.raise_error()
    except (asyncio.CancelledError, KeyboardInterrupt):
        run.stop(interrupt=True)
        raise
    finally:
        run.stop()


_defaults: dict[str | None, InterpreterPoolExecutor] = {}
_default_lock = threading.Lock()


def default_pool(fallback: str | None = None) -> InterpreterPoolExecutor:
    """The pool :func:`run` uses, created on first use with the default size
    (one worker per CPU) and shut down at exit like every pool; one for each
    ``fallback`` (None or ``"process"``)."""
    with _default_lock:
        pool = _defaults.get(fallback)
        if pool is None or pool._pool.shutdown_flag or pool._pool.broken:
            prefix = "multigil-default" if fallback is None else f"multigil-default-{fallback}"
            pool = _defaults[fallback] = InterpreterPoolExecutor(
                thread_name_prefix=prefix, fallback=fallback)
        return pool


async def run(fn: Callable[..., T], /, *args: Any, fallback: str | None = None,
              **kwargs: Any) -> T:
    """``await multigil.run(fn, *args, **kwargs)``: run ``fn`` in an interpreter
    of the default pool and return its result.

    ``fallback="process"``: in a pool whose fallback runs the tasks that
    refuse interpreters in processes (``fallback`` is not passed on to ``fn``).
    """
    result: T = await _await(default_pool(fallback).submit(fn, *args, **kwargs))
    return result

