"""Timing the suite: in what order, on which pools, and how each sample is taken.

The order is what makes ratios honest on a noisy two-core machine. Every
contender runs in this one process, and for each workload the contenders take
turns within a *round*: round 1 measures serial, threads, processes, ... once
each, then round 2 does it again, in a rotated order, and so on. A slow
moment (another process waking up, the CPU throttling) then hurts one sample
of every contender instead of all samples of one. Each figure is the median
of its rounds, and a speed-up is the median of per-round ratios.

Phases, in order:

1. *memory*: one fresh pool per contender, all workers started, its PSS read.
   Pools stay alive until all are weighed, so that no contender reuses heap
   another one freed; and they come first, while the heap is small.
2. *startup*: per round, each contender creates a fresh pool, waits for one
   no-op result (timed), and shuts it down (untimed).
3. *warm pools*: one pool per contender and worker count, created up front
   (process pools first, before this process has extra threads to fork
   with), every worker started, then an untimed warm-up round of every
   workload (imports, caches, lazily built inputs) and the timed rounds of
   the ``cpu``, ``tiny`` and ``data`` groups.

A contender that raises or hangs past the task timeout is marked failed with a
note, and skipped from then on; the rest of the run goes on.
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import workloads as _w
from .contenders import Contender, worker_pids
from .progress import Progress
from .stats import Summary, paired_ratios, summarize
from .suite import Workload

__all__ = [
    "RunConfig",
    "Results",
    "run_suite",
    "worker_counts_for",
    "pss_bytes",
]

Key = tuple[str, str, int]  # (contender name, workload name, workers)


def worker_counts_for(max_workers: int) -> tuple[int, ...]:
    """Worker counts for the scaling runs: ``1..N``, thinned out for large N.

    Up to 4 workers every count is measured; above that, powers of two and N
    itself, so that a 64-core machine does not take 64 times as long.
    """
    if max_workers <= 4:
        return tuple(range(1, max_workers + 1))
    counts = {1 << k for k in range(max_workers.bit_length()) if 1 << k < max_workers}
    return tuple(sorted(counts | {max_workers}))


@dataclass(frozen=True)
class RunConfig:
    """How big and how long a run is.

    Attributes
    ----------
    max_workers : int
        N: the pool size for the tiny, data, start-up and memory groups and
        the largest count in the scaling runs.
    worker_counts : tuple of int
        Pool sizes for the CPU scaling runs.
    repeats : int
        Timed rounds per workload.
    quick : bool
        Use the small sizes of :class:`~multigil._bench.suite.Workload`.
    tasks_per_worker : int
        A CPU sample is one batch of ``tasks_per_worker * max_workers`` tasks,
        the same batch at every worker count, so times compare directly.
    task_timeout : float
        Seconds to wait for any one result before declaring a contender hung.
    """

    max_workers: int
    worker_counts: tuple[int, ...]
    repeats: int
    quick: bool = False
    tasks_per_worker: int = 4
    task_timeout: float = 120.0

    @property
    def tasks_per_batch(self) -> int:
        """Tasks in one CPU-bound sample."""
        return self.tasks_per_worker * self.max_workers


@dataclass
class Results:
    """Everything a run measured, plus what it could not.

    Attributes
    ----------
    samples : dict
        ``(contender, workload, workers) -> [sample, ...]`` in round order.
    notes : dict
        Contender name -> why it was skipped or stopped.
    workload_notes : dict
        Workload name -> why it was skipped (e.g. no ``/proc``).
    references : dict
        Name -> samples of reference measurements: for each ``data/bytes-*``
        workload (same name), ``bytearray(payload)`` in the main thread, the
        floor for any transfer that copies the buffer once; and ``serial cpu
        share``, the CPU time serial got per second of its CPU samples (1.0 on
        an idle machine).
    extras : dict
        Details the report prints: ``map chunking``, workers started.
    """

    config: RunConfig
    contenders: list[Contender]
    workloads: list[Workload]
    samples: dict[Key, list[float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    workload_notes: dict[str, str] = field(default_factory=dict)
    references: dict[str, list[float]] = field(default_factory=dict)
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)
    elapsed: float = 0.0
    interrupted: bool = False

    def summary(self, contender: str, workload: str, workers: int) -> Summary | None:
        """Median and spread of one cell, or None if it was not measured."""
        data = self.samples.get((contender, workload, workers))
        return summarize(data) if data else None

    def speedup(self, contender: str, workload: str, workers: int) -> Summary | None:
        """Speed-up over serial: the median of per-round ``serial / contender`` ratios."""
        return self.ratio(("serial", 1), (contender, workers), workload)

    def ratio(self, base: tuple[str, int], other: tuple[str, int], workload: str) -> Summary | None:
        """How many times faster *other* ran *workload* than *base*, round by round.

        *base* and *other* are ``(contender, workers)``; the result summarizes
        the per-round ratios ``base / other`` of their times (None if either
        cell is missing).
        """
        a = self.samples.get((base[0], workload, base[1]))
        b = self.samples.get((other[0], workload, other[1]))
        if not a or not b:
            return None
        ratios = paired_ratios(a, b)
        return summarize(ratios) if ratios else None


# -- memory ---------------------------------------------------------------------


def pss_bytes(pid: int | str = "self") -> int | None:
    """Proportional set size of a process in bytes, or None where unknown.

    PSS divides each shared page among the processes sharing it, so forked
    workers are not charged for the parent's pages. ``smaps_rollup`` exists on
    Linux 4.14+; elsewhere there is nothing cheap and accurate to read.
    """
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


# -- probes: one sample each ------------------------------------------------------


class _Failed(Exception):
    """A contender raised or hung; the message says which and where."""


def _result(fut: cf.Future[Any], timeout: float) -> Any:
    try:
        return fut.result(timeout=timeout)
    except cf.TimeoutError:
        raise _Failed(f"no result within {timeout:g} s") from None


def _start_all(pool: cf.Executor, workers: int, timeout: float) -> int:
    """Make a lazily started pool start all its workers; return how many answered.

    Each probe task sleeps, so while it runs the pool must hand the next one to
    another (new) worker. A few tries with longer sleeps cover slow starters.
    """
    seen: set[tuple[int, int]] = set()
    for attempt in range(1, 5):
        futs = [pool.submit(_w.worker_id, 0.02 * attempt) for _ in range(workers)]
        seen.update(_result(f, timeout) for f in futs)
        if len(seen) >= workers:
            break
    return len(seen)


def _probe_batch(pool: cf.Executor, wl: Workload, size: int, tasks: int, timeout: float) -> float:
    fn = wl.fn
    assert fn is not None
    t0 = time.perf_counter()
    futs = [pool.submit(fn, size) for _ in range(tasks)]
    for f in futs:
        _result(f, timeout)
    return time.perf_counter() - t0


def _probe_submit(pool: cf.Executor, wl: Workload, calls: int, timeout: float) -> float:
    fn = wl.fn
    assert fn is not None
    t0 = time.perf_counter()
    for _ in range(calls):
        _result(pool.submit(fn), timeout)
    return (time.perf_counter() - t0) / calls


def _probe_map(pool: cf.Executor, wl: Workload, items: int, chunksize: int | None, timeout: float) -> float:
    fn = wl.fn
    assert fn is not None
    kwargs: dict[str, Any] = {"timeout": timeout}
    if chunksize is not None:
        kwargs["chunksize"] = chunksize
    t0 = time.perf_counter()
    try:
        for _ in pool.map(fn, range(items), **kwargs):
            pass
    except cf.TimeoutError:
        raise _Failed(f"map did not finish within {timeout:g} s") from None
    return items / (time.perf_counter() - t0)


def _probe_transfer(pool: cf.Executor, wl: Workload, payload: Any, timeout: float) -> float:
    fn = wl.fn
    assert fn is not None
    t0 = time.perf_counter()
    _result(pool.submit(fn, payload), timeout)
    return time.perf_counter() - t0


def _rotate[T](items: Sequence[T], k: int) -> list[T]:
    """*items* rotated left by *k*: round k starts with a different contender,
    so none is always the one that runs right after, say, a process pool."""
    if not items:
        return []
    k %= len(items)
    return [*items[k:], *items[:k]]


def _shutdown(pool: cf.Executor, broken: bool) -> None:
    # A broken or interrupted pool may never finish its tasks: don't wait.
    try:
        pool.shutdown(wait=not broken, cancel_futures=True)
    except Exception:
        pass


# -- the run --------------------------------------------------------------------


class _Run:
    def __init__(
        self,
        workloads: Sequence[Workload],
        contenders: Sequence[Contender],
        config: RunConfig,
        progress_factory: Callable[[int], Progress] | None,
    ) -> None:
        self.cfg = config
        self.workloads = list(workloads)
        self.contenders = [c for c in contenders if c.available]
        self.pool_contenders = [c for c in self.contenders if c.has_pool]
        self.results = Results(config, list(contenders), list(workloads))
        for c in contenders:
            if not c.available:
                self.results.notes[c.name] = c.note or "not available"
        make_progress = progress_factory or (lambda total: Progress(total, enabled=False))
        self.progress = make_progress(self._count_steps())
        self.broken: set[str] = set()
        self.pools: dict[tuple[str, int], cf.Executor] = {}

    # -- bookkeeping --

    def _groups(self) -> list[str]:
        seen: list[str] = []
        for wl in self.workloads:
            if wl.group not in seen:
                seen.append(wl.group)
        return seen

    def _of(self, group: str) -> list[Workload]:
        return [wl for wl in self.workloads if wl.group == group]

    def _pairs(self, wl: Workload) -> list[tuple[Contender, int]]:
        """The (contender, workers) cells of one workload, serial first."""
        counts = self.cfg.worker_counts if wl.probe == "batch" else (self.cfg.max_workers,)
        pairs: list[tuple[Contender, int]] = []
        for c in self.contenders:
            if not c.has_pool:
                if wl.probe not in ("startup", "memory"):
                    pairs.append((c, 1))
            else:
                pairs.extend((c, n) for n in counts)
        return pairs

    def _count_steps(self) -> int:
        total, pools = 0, set[tuple[str, int]]()
        for wl in self.workloads:
            if wl.probe == "memory":
                total += len(self.pool_contenders)
            elif wl.probe == "startup":
                total += self.cfg.repeats * len(self.pool_contenders)
            else:
                pairs = self._pairs(wl)
                pools.update((c.name, n) for c, n in pairs if c.has_pool)
                total += (self.cfg.repeats + 1) * len(pairs)
        return total + len(pools)

    def _note(self, wl: Workload, text: str) -> None:
        old = self.results.workload_notes.get(wl.name)
        self.results.workload_notes[wl.name] = f"{old}; {text}" if old else text

    def _record(self, c: Contender, wl: Workload, workers: int, value: float) -> None:
        self.results.samples.setdefault((c.name, wl.name, workers), []).append(value)

    def _fail(self, c: Contender, where: str, exc: BaseException) -> None:
        msg = str(exc) or type(exc).__name__
        if not isinstance(exc, _Failed):
            msg = f"{type(exc).__name__}: {msg}"
        self.broken.add(c.name)
        self.results.notes.setdefault(c.name, f"failed in {where}: {msg.splitlines()[0]}")
        for (name, n), pool in list(self.pools.items()):
            if name == c.name:
                _shutdown(pool, broken=True)
                del self.pools[(name, n)]

    # -- phases --

    def run(self) -> Results:
        t0 = time.perf_counter()
        try:
            # What else ran during the last minute, for the report's warning.
            self.results.extras["load average"] = {"before": os.getloadavg()[0]}
        except (AttributeError, OSError):
            pass
        try:
            for group in self._groups():
                wls = self._of(group)
                if group == "memory":
                    self._memory(wls[0])
                elif group == "startup":
                    self._startup(wls[0])
                else:
                    self._timed(group, wls)
        except KeyboardInterrupt:
            self.results.interrupted = True
        finally:
            interrupted = self.results.interrupted
            for (name, _), pool in self.pools.items():
                _shutdown(pool, broken=interrupted or name in self.broken)
            self.pools.clear()
            self.progress.close()
            self.results.elapsed = time.perf_counter() - t0
        return self.results

    def _memory(self, wl: Workload) -> None:
        n = self.cfg.max_workers
        self.progress.phase("memory per idle worker")
        if pss_bytes() is None:
            self._note(wl, "skipped: /proc/self/smaps_rollup is not readable here")
            for _ in self.pool_contenders:
                self.progress.step()
            return
        alive: list[tuple[Contender, cf.Executor]] = []
        started = self.results.extras.setdefault("workers started", {})
        # Process pools first: fork() from a process that already runs other
        # pools' threads is unsafe (and deprecated since 3.12).
        order = sorted(self.pool_contenders, key=lambda c: c.kind != "processes")
        try:
            for c in order:
                self.progress.step(f"{c.label} ×{n}")
                try:
                    gc.collect()
                    before = pss_bytes()
                    pool = c.make(n)
                    alive.append((c, pool))
                    started[c.name] = _start_all(pool, n, self.cfg.task_timeout)
                    gc.collect()
                    pids = worker_pids(pool)
                    if pids is not None:
                        sizes = [pss_bytes(pid) for pid in pids]
                        used = float(sum(s for s in sizes if s is not None))
                        if not pids or None in sizes:
                            self._note(wl, f"could not read the PSS of {c.label}'s workers")
                            continue
                    else:
                        after = pss_bytes()
                        if before is None or after is None:
                            self._note(wl, f"could not read this process's PSS for {c.label}")
                            continue
                        used = float(after - before)
                    self._record(c, wl, n, used / n)
                except Exception as exc:
                    self._fail(c, wl.name, exc)
        except BaseException:
            # Ctrl-C (or worse): don't wait for anyone's tasks.
            for _, pool in alive:
                _shutdown(pool, broken=True)
            raise
        for c, pool in alive:
            _shutdown(pool, broken=c.name in self.broken)

    def _startup(self, wl: Workload) -> None:
        n = self.cfg.max_workers
        for r in range(self.cfg.repeats):
            self.progress.phase(f"start-up, round {r + 1}/{self.cfg.repeats}")
            for c in _rotate(self.pool_contenders, r):
                self.progress.step(f"{c.label} ×{n}")
                if c.name in self.broken:
                    continue
                try:
                    t0 = time.perf_counter()
                    pool = c.make(n)
                    try:
                        _result(pool.submit(_w.noop), self.cfg.task_timeout)
                        elapsed = time.perf_counter() - t0
                    except BaseException:
                        _shutdown(pool, broken=True)
                        raise
                    _shutdown(pool, broken=False)
                    self._record(c, wl, n, elapsed)
                except Exception as exc:
                    self._fail(c, wl.name, exc)

    def _pool(self, c: Contender, n: int) -> cf.Executor:
        key = (c.name, n)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = c.make(n)
            self.results.extras.setdefault("workers started", {}).setdefault(
                c.name, _start_all(pool, n, self.cfg.task_timeout)
            )
        return pool

    def _timed(self, group: str, wls: list[Workload]) -> None:
        # Create every pool this group needs before timing anything, process
        # pools first (see _memory), so no pool is born during a timed round.
        needed: list[tuple[Contender, int]] = []
        for wl in wls:
            for c, n in self._pairs(wl):
                if c.has_pool and (c, n) not in needed and (c.name, n) not in self.pools:
                    needed.append((c, n))
        needed.sort(key=lambda cn: cn[0].kind != "processes")
        self.progress.phase(f"{group}: starting pools")
        for c, n in needed:
            self.progress.step(f"{c.label} ×{n}")
            if c.name in self.broken:
                continue
            try:
                self._pool(c, n)
            except Exception as exc:
                self._fail(c, f"starting a pool of {n}", exc)

        quick = self.cfg.quick
        payloads = {
            wl.name: wl.payload(wl.sized(quick)) for wl in wls if wl.payload is not None
        }
        try:
            for r in range(-1, self.cfg.repeats):
                label = "warm-up" if r < 0 else f"round {r + 1}/{self.cfg.repeats}"
                self.progress.phase(f"{group}, {label}")
                for wl in wls:
                    if r >= 0 and wl.payload is not None and isinstance(payloads[wl.name], bytes):
                        # The floor any transfer of this buffer is judged against.
                        t0 = time.perf_counter()
                        bytearray(payloads[wl.name])
                        ref = wl.name
                        self.results.references.setdefault(ref, []).append(time.perf_counter() - t0)
                    for c, n in _rotate(self._pairs(wl), max(r, 0)):
                        self.progress.step(f"{wl.name} · {c.label} ×{n}")
                        if c.name in self.broken:
                            continue
                        try:
                            value = self._sample(c, n, wl, payloads.get(wl.name))
                        except Exception as exc:
                            self._fail(c, wl.name, exc)
                            continue
                        if r >= 0:
                            self._record(c, wl, n, value)
        finally:
            payloads.clear()

    def _sample(self, c: Contender, n: int, wl: Workload, payload: Any) -> float:
        pool = self.pools[(c.name, n)] if c.has_pool else c.make(1)
        timeout = self.cfg.task_timeout
        size = wl.sized(self.cfg.quick)
        if wl.probe == "batch":
            if c.has_pool:
                return _probe_batch(pool, wl, size, self.cfg.tasks_per_batch, timeout)
            # Serial runs in this thread, so its CPU time against its wall time
            # tells how much of a core the machine actually gave us: well
            # under 100% means other programs compete and figures are noisy.
            cpu0 = time.thread_time()
            wall = _probe_batch(pool, wl, size, self.cfg.tasks_per_batch, timeout)
            self.results.references.setdefault("serial cpu share", []).append(
                (time.thread_time() - cpu0) / wall
            )
            return wall
        if wl.probe == "submit":
            return _probe_submit(pool, wl, size, timeout)
        if wl.probe == "map":
            chunking = self.results.extras.setdefault("map chunking", {})
            chunking[c.name] = c.chunk_note(size, n)
            return _probe_map(pool, wl, size, c.chunksize(size, n), timeout)
        if wl.probe == "transfer":
            return _probe_transfer(pool, wl, payload, timeout)
        raise ValueError(f"unknown probe {wl.probe!r} for {wl.name}")


def run_suite(
    workloads: Sequence[Workload],
    contenders: Sequence[Contender],
    config: RunConfig,
    progress_factory: Callable[[int], Progress] | None = None,
) -> Results:
    """Measure *workloads* on every available contender.

    Parameters
    ----------
    workloads : sequence of Workload
        In suite order (see :func:`multigil._bench.suite.resolve`).
    contenders : sequence of Contender
        All of them, available or not: unavailable ones get a note.
    config : RunConfig
    progress_factory : callable, optional
        ``factory(total_steps)`` returns the :class:`Progress` to report to.

    Returns
    -------
    Results
        Partial, with ``interrupted`` set, if the user pressed Ctrl-C.
    """
    return _Run(workloads, contenders, config, progress_factory).run()


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask), not just those installed."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
