"""Dask's distributed workers, running their tasks in interpreters.

A worker hands the executor named in a task's ``executor`` annotation the
call ``_run_task_simple(node, data, delay)``: Dask's wrapper, which evaluates
the task's graph node and builds the message the worker reports (result or
error, timings, size).  That wrapper, like all of ``distributed``, cannot run in
an isolated interpreter (psutil, msgpack).  So the executor splits it:

* in the worker (main interpreter): the node is translated (``_dask_plan``)
  into the task's own call -- its function and resolved arguments -- or a
  small plan of calls;
* in an interpreter: the call or plan runs (``_calls``), timed;
* back in the worker, as the interpreter future completes: Dask's own wrapper
  builds its message from that outcome, so results, errors (with the remote
  traceback as their ``__cause__``), sizes and types are reported exactly
  as Dask reports them, with the interpreter's start and stop times.

The worker's event loop never waits: the message is built in the pool's
completion callback.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from distributed import worker as _worker_module
from distributed.core import Status
from distributed.diagnostics.plugin import WorkerPlugin

from .._executor import _fallback
from ..executor import InterpreterPoolExecutor
from . import _calls, _dask_plan

if TYPE_CHECKING:
    from distributed import Worker

__all__ = ["InterpreterTaskExecutor", "InterpreterPoolPlugin", "dask_setup"]

LOGGER = logging.getLogger("multigil.dask")

# How long a worker that closes waits for its interpreters to stop the tasks
# they were running (each is interrupted at its next bytecode; one blocked in
# a C call stops only when the call returns).
CLOSE_TIMEOUT = 10.0


class InterpreterTaskExecutor(cf.Executor):
    """A Dask worker executor that runs tasks in interpreters of this process.

    Install it under a name and route tasks to it with an annotation::

        Worker(..., executor={"interpreters": InterpreterTaskExecutor(8)})
        with dask.annotate(executor="interpreters"):
            ...

    (:class:`InterpreterPoolPlugin` does this on every worker of a cluster.)
    A task's function and arguments run in one of ``max_workers``
    interpreters, each with its own GIL; Dask's bookkeeping stays in the
    worker.  Other callables submitted to it run in an interpreter as they are.

    ``pool_options`` are passed to :class:`multigil.InterpreterPoolExecutor`
    unchanged (``initializer``, ``shared``, ``max_tasks_per_worker``, ...),
    but for ``fallback="process"``: a task that refuses interpreters (its
    function or data need numpy, ...) then runs in a thread of the worker, as
    a task without the annotation does -- a Dask worker process is daemonic
    and may not start processes of its own.
    """

    def __init__(self, max_workers: int | None = None, *, fallback: str | None = None,
                 **pool_options: Any) -> None:
        # What Dask's worker submits for a task (see the module docstring).
        run_task = getattr(_worker_module, "_run_task_simple", None)
        if run_task is None:
            from importlib.metadata import version

            raise ImportError(
                f"multigil.dask does not know this distributed ({version('distributed')}): "
                "its workers hand executors distributed.worker._run_task_simple, which this "
                "version lacks; install distributed 2025.1 to 2026.x "
                "(pip install 'multigil[dask]')")
        self._run_task: Callable[..., Any] = run_task
        if fallback is not None and fallback not in _fallback.KINDS:
            raise ValueError(f"fallback must be None or 'process', not {fallback!r}")
        self._pool = InterpreterPoolExecutor(max_workers, **pool_options)
        if fallback is not None:
            pool = self._pool
            pool._pool.fallback = _fallback.Fallback(
                _fallback.Threads(pool.max_workers, f"{pool._pool.name}-fallback"))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._pool!r}>"

    @property
    def pool(self) -> InterpreterPoolExecutor:
        """The interpreter pool the tasks run in."""
        return self._pool

    @property
    def max_workers(self) -> int:
        return self._pool.max_workers

    def warm(self) -> None:
        """Start the interpreters now rather than as tasks come."""
        self._pool._pool.start_all()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        run_task = self._run_task
        if fn is run_task and len(args) == 3 and not kwargs:
            return self._submit_task(run_task, *args)
        return self._pool.submit(fn, *args, **kwargs)

    def _submit_task(self, run_task: Callable[..., Any], node: Any, data: Any,
                     delay: float) -> cf.Future[Any]:
        outer: cf.Future[Any] = cf.Future()
        outer.set_running_or_notify_cancel()
        try:
            form, what = _dask_plan.translate(node, data)
            if form == "local":
                outer.set_result(run_task(node, data, delay))
                return outer
            # The task's own functions travel as the function the pool
            # calls, its data as arguments (see _calls.task_function).
            if form == "call":
                func, args, kwargs = what
                inner = self._pool.submit(_calls.task_function(_calls.timed_call, func),
                                          args, kwargs)
            else:
                plan, env = what
                inner = self._pool.submit(_calls.task_function(_calls.timed_plan, plan), env)
        except BaseException as exc:  # shut down, broken pool: Dask reports it
            outer.set_exception(exc)
            return outer
        submitted = time.time()
        inner.add_done_callback(lambda f: _report(outer, f, run_task, delay, submitted))
        return outer

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False,
                 interrupt: bool = True) -> None:
        """Stop the interpreters.

        A worker shuts its executors down when it closes, and then has no use
        for the results: by default queued tasks are cancelled and running
        ones interrupted (``interrupt=False``: the queued tasks run first,
        unless ``cancel_futures``).
        """
        self._pool.shutdown(wait, cancel_futures=cancel_futures or interrupt, interrupt=interrupt)


def _report(outer: cf.Future[Any], inner: cf.Future[Any], run_task: Callable[..., Any],
            delay: float, submitted: float) -> None:
    """Complete ``outer`` with the message Dask's wrapper builds from the
    outcome of ``inner`` (runs in the pool's completion callback)."""
    times: list[float] = []

    def outcome(_data: object) -> Any:
        start, stop, result = inner.result()
        times[:] = (start, stop)
        return result

    try:
        msg = run_task(outcome, {}, delay)
        if times:
            msg["start"], msg["stop"] = times[0] + delay, times[1] + delay
        else:  # the task failed: it ran at most from submission until now
            msg["start"] = submitted + delay
        outer.set_result(msg)
    except BaseException as exc:  # never leave the worker waiting
        outer.set_exception(exc)


class InterpreterPoolPlugin(WorkerPlugin):
    """Give every Dask worker an interpreter pool, as a named executor.

    ::

        client.register_plugin(InterpreterPoolPlugin())
        with dask.annotate(executor="interpreters"):
            futures = client.map(pure_python_function, items)

    max_workers
        Interpreters per worker.  Default: the worker's ``nthreads``, which
        is how many tasks it runs at once (start workers with
        ``--nthreads $(nproc)``).
    name
        The executor's name, which tasks name in their annotation.
    pool_options
        Passed to :class:`multigil.InterpreterPoolExecutor` unchanged.

    Registering it again replaces the pools; removing it
    (``client.unregister_worker_plugin``) lets the queued tasks finish and
    closes the interpreters.
    """

    idempotent = False

    def __init__(self, max_workers: int | None = None, name: str = "interpreters",
                 **pool_options: Any) -> None:
        if max_workers is not None:
            if not isinstance(max_workers, int) or isinstance(max_workers, bool):
                raise TypeError("max_workers must be an integer or None")
            if max_workers <= 0:
                raise ValueError("max_workers must be greater than 0")
        if not isinstance(name, str) or not name:
            raise TypeError("name must be a non-empty string: the executor name that tasks "
                            "are annotated with")
        self.max_workers = max_workers
        self.executor_name = name
        self.pool_options = pool_options
        # The plugin's name on the worker: one plugin per executor name.
        self.name = f"multigil-interpreters-{name}"
        self._replaced: cf.Executor | None = None

    async def setup(self, worker: Worker) -> None:
        executor = InterpreterTaskExecutor(self.max_workers or worker.state.nthreads,
                                           **self.pool_options)
        self._replaced = worker.executors.get(self.executor_name)
        worker.executors[self.executor_name] = executor
        executor.warm()

    async def teardown(self, worker: Worker) -> None:
        executor = worker.executors.get(self.executor_name)
        if not isinstance(executor, InterpreterTaskExecutor):
            return
        if self._replaced is not None:
            worker.executors[self.executor_name] = self._replaced
        else:
            del worker.executors[self.executor_name]
        stop = worker.status not in (Status.running, Status.paused)
        try:
            await asyncio.wait_for(
                asyncio.to_thread(executor.shutdown, True, interrupt=stop), CLOSE_TIMEOUT)
        except TimeoutError:
            LOGGER.warning("multigil: %r: tasks still running %.0f s after they were "
                           "interrupted; the interpreters close when they return",
                           executor, CLOSE_TIMEOUT)


def dask_setup(worker: Any) -> Any:
    """The ``--preload multigil.dask`` hook of ``dask worker``: installs
    :class:`InterpreterPoolPlugin` with its defaults on this worker."""
    if not hasattr(worker, "plugin_add") or not hasattr(worker, "executors"):
        raise TypeError(
            f"multigil.dask is a worker preload (dask worker --preload multigil.dask), "
            f"not one for a {type(worker).__name__}; for a whole cluster, call "
            f"client.register_plugin(multigil.dask.InterpreterPoolPlugin())")
    return worker.plugin_add(InterpreterPoolPlugin(), catch_errors=False)
