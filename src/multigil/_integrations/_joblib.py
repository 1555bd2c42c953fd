"""The joblib backend ``"multigil"``: ``Parallel`` calls run in interpreters.

joblib hands a backend ``BatchedCalls`` objects: a list of ``(func, args,
kwargs)`` items, and a ``__call__`` that runs them under joblib's
``parallel_config``.  joblib does not import in an isolated interpreter
(faulthandler), so the backend sends only the items, and the interpreter runs
them (``_calls``; a batch of one function as that function and the
arguments alone, see ``_compact``); joblib's bookkeeping -- dispatching,
batch sizes, ordering, timeouts -- stays in the calling interpreter.

The pools stay warm between ``Parallel`` calls, as loky's workers do: one per
``(n_jobs, pool options)``, the few most recently used kept.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Mapping
from typing import Any

from joblib._parallel_backends import (
    AutoBatchingMixin,
    FallbackToBackend,
    ParallelBackendBase,
    SequentialBackend,
)

from ..executor import InterpreterFuture, InterpreterPoolExecutor
from .._executor._pool import BrokenInterpreterPool, default_max_workers
from . import _calls

__all__ = ["InterpreterBackend", "pools"]


class _Pools:
    """Interpreter pools kept between ``Parallel`` calls, keyed by
    ``(n_jobs, pool options)``; at most ``keep`` of them, the least recently
    used shut down first (work it already took still finishes)."""

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._entries: list[tuple[int, dict[str, Any], InterpreterPoolExecutor]] = []

    def get(self, n_jobs: int, options: Mapping[str, Any]) -> InterpreterPoolExecutor:
        """A running pool of ``n_jobs`` interpreters made with ``options``."""
        with self._lock:
            for i, (n, opts, pool) in enumerate(self._entries):
                if n == n_jobs and _same(opts, options):
                    del self._entries[i]
                    if _usable(pool):
                        self._entries.append((n, opts, pool))
                        return pool
                    break
            pool = InterpreterPoolExecutor(n_jobs, **options)
            self._entries.append((n_jobs, dict(options), pool))
            evicted = self._entries[:-self.keep] if len(self._entries) > self.keep else []
            del self._entries[:len(evicted)]
        for _, _, old in evicted:
            old.shutdown(wait=False)
        return pool

    def discard(self, pool: InterpreterPoolExecutor) -> None:
        with self._lock:
            self._entries = [e for e in self._entries if e[2] is not pool]

    def shutdown(self) -> None:
        """Shut every kept pool down (they start again when next needed)."""
        with self._lock:
            entries, self._entries = self._entries, []
        for _, _, pool in entries:
            pool.shutdown(wait=True)


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    for key, value in a.items():
        other = b[key]
        if value is other:
            continue
        try:
            if not bool(value == other):
                return False
        except Exception:
            return False
    return True


def _usable(pool: InterpreterPoolExecutor) -> bool:
    state = pool._pool
    return not (state.broken or state.shutdown_flag)


pools = _Pools()


def _compact(items: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]
             ) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """What the pool runs for a batch's ``(func, args, kwargs)`` items, as
    ``(callable, args)``.  A batch usually calls one function with
    positional arguments: the function is then sent once and the arguments
    alone, which cross several times faster than the items."""
    # Built-in loops only: this runs, under the caller's GIL, for every item.
    funcs, arglist, kwlist = zip(*items)
    func = funcs[0]
    if funcs.count(func) != len(funcs):
        return _calls.task_function(_calls.run_batch, items), ()
    calls = _calls.task_function(_calls.map_calls, func)
    if any(kwlist):
        return calls, (arglist, kwlist)
    if set(map(len, arglist)) != {1}:
        return calls, (arglist,)
    return _calls.task_function(_calls.map_values, func), (list(map(_first, arglist)),)


_first = operator.itemgetter(0)


class InterpreterBackend(AutoBatchingMixin, ParallelBackendBase):  # type: ignore[misc]
    """joblib backend that runs each batch of calls in an interpreter.

    ``Parallel(n_jobs=N)`` runs on ``N`` interpreters of this process, each
    with its own GIL (``n_jobs=-1``: one per CPU; ``n_jobs=1``: in the
    calling thread, as joblib does for every backend).  Keyword arguments
    (``parallel_config(backend="multigil", **options)``) are passed to
    :class:`multigil.InterpreterPoolExecutor` unchanged: ``initializer``,
    ``shared``, ``max_tasks_per_worker``, ...

    What it implements of joblib's backend API: results through the
    completion callback (``supports_retrieve_callback``), so
    ``return_as="generator"`` and ``"generator_unordered"`` and ``timeout``
    work; automatic batch sizes tuned for the low cost of a batch here;
    ``abort_everything`` cancels the queued batches and interrupts the
    running ones (after an error, a timeout, or a generator closed early),
    and the interpreters survive for the next call.
    """

    supports_retrieve_callback = True
    supports_inner_max_num_threads = False
    supports_sharedmem = False
    uses_threads = False

    # A batch costs tens of microseconds here, not the milliseconds of a
    # process pool: batches may be much shorter than loky's 0.2 s and still
    # hide it, which keeps the cores busy at the end of short calls.
    MIN_IDEAL_BATCH_DURATION = 0.02
    MAX_IDEAL_BATCH_DURATION = 1.0

    def __init__(self, nesting_level: int | None = None,
                 inner_max_num_threads: int | None = None, **pool_options: Any) -> None:
        super().__init__(nesting_level=nesting_level,
                         inner_max_num_threads=inner_max_num_threads, **pool_options)
        self._pool: InterpreterPoolExecutor | None = None
        self._n_jobs = 1
        self._lock = threading.Lock()
        self._running: set[InterpreterFuture] = set()

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if n_jobs < 0:
            return max(default_max_workers() + 1 + n_jobs, 1)
        return int(n_jobs)

    def configure(self, n_jobs: int | None = 1, parallel: Any = None, prefer: Any = None,
                  require: Any = None, **parallel_kwargs: Any) -> int:
        # parallel_kwargs are Parallel's process-pool settings (max_nbytes,
        # mmap_mode, temp_folder, context, ...): nothing is memory-mapped here.
        n = self.effective_n_jobs(n_jobs)
        if n == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self.parallel = parallel
        self._n_jobs = n
        self._pool = pools.get(n, self.backend_kwargs)
        return n

    def submit(self, func: Callable[[], Any],
               callback: Callable[[Any], object] | None = None) -> InterpreterFuture:
        items = getattr(func, "items", None)
        if isinstance(items, list) and items:
            fn, args = _compact(items)
            future = self._submit(fn, *args)
        else:
            future = self._submit(func)
        with self._lock:
            self._running.add(future)
        future.add_done_callback(self._forget)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def _submit(self, fn: Callable[..., Any], *args: Any) -> InterpreterFuture:
        pool = self._pool
        if pool is None:  # submit without configure: joblib always configures first
            pool = self._pool = pools.get(self.effective_n_jobs(self._n_jobs), self.backend_kwargs)
        try:
            return pool.submit(fn, *args)
        except (RuntimeError, BrokenInterpreterPool):
            # The kept pool was shut down (replaced by others) or broke: a
            # fresh one, once; a pool that breaks again raises.
            pools.discard(pool)
            pool = self._pool = pools.get(self._n_jobs, self.backend_kwargs)
            return pool.submit(fn, *args)

    def _forget(self, future: Any) -> None:
        with self._lock:
            self._running.discard(future)

    def retrieve_result_callback(self, future: InterpreterFuture) -> Any:
        return future.result()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Cancel the batches not started and interrupt those running; the
        pool stays ready for the next call either way."""
        with self._lock:
            running, self._running = self._running, set()
        for future in running:
            future.cancel(interrupt=True)

    def terminate(self) -> None:
        """End of a ``Parallel`` call: the interpreters stay warm for the next."""
        self._pool = None
        self.reset_batch_stats()
