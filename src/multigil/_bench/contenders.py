"""The executors that ``multigil bench`` compares.

A :class:`Contender` knows how to make a pool with *n* workers, how to pass a
``map`` chunksize to it, and, for process pools, which child processes to
weigh for memory. :func:`discover` lists the contenders this Python can run,
plus those it cannot, each with a note saying why, so that the report shows
what was left out instead of silently dropping a column.

Optional contenders (multigil's own executor, the stdlib's 3.14 interpreter
pool) are imported here lazily, when :func:`discover` runs: the CLI must work
before the C core is built and on Pythons without ``concurrent.interpreters``.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from . import workloads as _w

__all__ = [
    "Contender",
    "SerialExecutor",
    "discover",
    "gil_enabled",
]

T = TypeVar("T")

Kind = Literal["serial", "threads", "processes", "interpreters"]


def gil_enabled() -> bool:
    """True unless this is a free-threaded build running without its GIL."""
    probe: Callable[[], bool] | None = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else bool(probe())


class SerialExecutor(cf.Executor):
    """An executor that runs each task at once, in the caller's thread.

    It is the baseline every speed-up is measured against, and it goes
    through the same ``submit``/``result`` code path as the pools so that the
    comparison includes the (tiny) cost of a :class:`~concurrent.futures.Future`.
    """

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> cf.Future[T]:
        """Run ``fn(*args, **kwargs)`` now; return a completed future."""
        fut: cf.Future[T] = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # a future carries any exception
            fut.set_exception(exc)
        return fut

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[T]:
        """Plain :func:`map`: no futures at all, the floor for ``tiny/map``."""
        return map(fn, *iterables)


@dataclass(frozen=True)
class Contender:
    """One executor under test.

    Attributes
    ----------
    name : str
        Stable identifier used in the JSON (``"processes"``, ``"multigil"``).
    label : str
        Column header (``"processes (fork)"``).
    kind : {"serial", "threads", "processes", "interpreters"}
    factory : callable or None
        ``factory(workers)`` returns a new executor; None when unavailable.
    note : str or None
        Why the contender is unavailable, or a remark worth printing.
    chunking : {"none", "auto", "fraction"}
        How ``tiny/map`` is called: ``"none"`` passes no chunksize (the pool
        ignores it or has none), ``"auto"`` passes none because the pool
        chunks by itself (multigil), ``"fraction"`` passes
        ``items // (4 * workers)``, the usual advice for process pools.
    """

    name: str
    label: str
    kind: Kind
    factory: Callable[[int], cf.Executor] | None = field(default=None, compare=False)
    note: str | None = None
    chunking: Literal["none", "auto", "fraction"] = "none"

    @property
    def available(self) -> bool:
        """Whether this Python can run the contender."""
        return self.factory is not None

    @property
    def has_pool(self) -> bool:
        """False for the serial baseline, which has no workers to start or weigh."""
        return self.kind != "serial"

    def make(self, workers: int) -> cf.Executor:
        """Create a pool with *workers* workers.

        Raises
        ------
        RuntimeError
            If the contender is unavailable.
        """
        if self.factory is None:
            raise RuntimeError(f"{self.label} is not available: {self.note}")
        return self.factory(workers)

    def chunksize(self, items: int, workers: int) -> int | None:
        """The chunksize to pass to ``map`` for *items* items, or None to pass none."""
        if self.chunking == "fraction":
            return max(1, items // (4 * workers))
        return None

    def chunk_note(self, items: int, workers: int) -> str:
        """How ``map`` was chunked, in words, for the report."""
        if self.chunking == "fraction":
            return f"chunksize={self.chunksize(items, workers)}"
        if self.chunking == "auto":
            return "automatic chunking"
        return "one item per task"


def worker_pids(executor: cf.Executor) -> list[int] | None:
    """The pids of a process pool's workers, or None if the pool has none.

    ``ProcessPoolExecutor`` keeps them in ``_processes`` (a private attribute,
    stable since Python 3.2); only the memory probe needs it.
    """
    procs = getattr(executor, "_processes", None)
    if not isinstance(procs, dict):
        return None
    return [int(pid) for pid in procs]


def _process_factory(method: str) -> Callable[[int], cf.Executor]:
    ctx = multiprocessing.get_context(method)

    def make(workers: int) -> cf.Executor:
        return cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=_w.ignore_sigint
        )

    return make


def _multigil() -> Contender:
    name, label = "multigil", "multigil"
    try:
        # Lazy on purpose: the executor (and the C core under it) is written in
        # parallel with this CLI and may not be importable yet.
        import multigil

        executor_cls = multigil.InterpreterPoolExecutor
    except Exception as exc:  # ImportError, AttributeError, a broken build...
        reason = f"{type(exc).__name__}: {exc}".strip()
        return Contender(name, label, "interpreters", note=f"not importable ({reason})")

    def make(workers: int) -> cf.Executor:
        pool: cf.Executor = executor_cls(max_workers=workers)
        return pool

    return Contender(name, label, "interpreters", make, chunking="auto")


def _stdlib_interpreters() -> Contender:
    name, label = "stdlib-interpreters", "stdlib interpreters"
    cls = getattr(cf, "InterpreterPoolExecutor", None)
    if cls is None:
        version = ".".join(map(str, sys.version_info[:3]))
        return Contender(
            name,
            label,
            "interpreters",
            note=f"concurrent.futures.InterpreterPoolExecutor needs Python 3.14+ (this is {version})",
        )

    def make(workers: int) -> cf.Executor:
        pool: cf.Executor = cls(max_workers=workers)
        return pool

    return Contender(name, label, "interpreters", make)


def discover(all_start_methods: bool = False) -> list[Contender]:
    """List the contenders, available or not, in the order the report shows them.

    Parameters
    ----------
    all_start_methods : bool
        Also add process pools for every other start method this platform has
        (``fork``, ``forkserver``, ``spawn``), not only its default one.
    """
    threads_label = "threads" if gil_enabled() else "threads (free-threaded)"
    contenders = [
        Contender("serial", "serial", "serial", lambda workers: SerialExecutor()),
        Contender(
            "threads",
            threads_label,
            "threads",
            lambda workers: cf.ThreadPoolExecutor(max_workers=workers),
        ),
    ]
    # The default is whatever ProcessPoolExecutor would use on this platform
    # and version: fork on Linux up to 3.13, forkserver from 3.14, spawn on
    # macOS and Windows. get_all_start_methods() lists the default first and,
    # unlike get_start_method(), does not fix the method for the process.
    default = (
        multiprocessing.get_start_method(allow_none=True)
        or multiprocessing.get_all_start_methods()[0]
    )
    contenders.append(
        Contender(
            "processes",
            f"processes ({default})",
            "processes",
            _process_factory(default),
            chunking="fraction",
        )
    )
    if all_start_methods:
        for method in ("fork", "forkserver", "spawn"):
            if method == default:
                continue
            if method in multiprocessing.get_all_start_methods():
                contenders.append(
                    Contender(
                        f"processes-{method}",
                        f"processes ({method})",
                        "processes",
                        _process_factory(method),
                        chunking="fraction",
                    )
                )
            else:
                contenders.append(
                    Contender(
                        f"processes-{method}",
                        f"processes ({method})",
                        "processes",
                        note=f"start method {method!r} is not available on this platform",
                    )
                )
    contenders.append(_multigil())
    contenders.append(_stdlib_interpreters())
    return contenders
