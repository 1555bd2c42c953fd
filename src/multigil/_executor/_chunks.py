"""``map``: chunking, ordered and unordered results, progress.

A map call cuts its input into chunks -- lists of argument tuples -- and sends
each chunk as one task (``_core.submit_task(..., chunked=True)``); the worker
applies the function to every item and sends back ``(results, error)``, the
error being that of the first item that raised.  One chunk costs about as much
as one task: a few tens of microseconds, most of it the two moments the worker
spends attached to the main interpreter.  Chunks are what make a million tiny
tasks a second possible.

Chunk size, unless given:

* the input's length is known (``len()``; without ``buffersize`` every input
  is collected at once, as the stdlib does, so it always is):
  ``ceil(n / (4 * workers))``, at most :data:`CHUNK_CAP` -- four chunks a
  worker balance uneven work, as ``multiprocessing.Pool.map`` does;
* the input is read lazily (``buffersize``): adaptive.  The first chunks
  hold one item each, and only ``2 * workers`` of them are sent before one
  comes back.  Each chunk that comes back tells how long an item takes; the
  next chunk is sized to last about :data:`TARGET_CHUNK_S`, growing at most
  twofold a chunk, up to the cap and to ``buffersize // (2 * workers)``.
  At most :data:`CHUNKS_AHEAD` chunks a worker are in flight: ``buffersize``
  bounds the items, this the chunks.  Without it, a first estimate that is
  far too high (a fresh worker's first task also pays for its imports)
  filled the whole buffer with one-item chunks, and every later chunk had
  room for one item only: the first map of a fresh pool cost a task per
  item.
"""

from __future__ import annotations

import collections
import itertools
import queue
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import CancelledError
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._future import InterpreterFuture
    from ._pool import _Pool, _Task

__all__ = ["CHUNK_CAP", "CHUNKS_AHEAD", "TARGET_CHUNK_S", "auto_chunksize", "MapRun", "iterate",
           "handing_out"]

#: Most items a chunk gets when map chooses the size.
CHUNK_CAP = 4096
#: How long an adaptively sized chunk should keep a worker busy.
TARGET_CHUNK_S = 0.02
#: Adaptive chunks in flight, per worker: one running, the rest queued.
CHUNKS_AHEAD = 3


def auto_chunksize(n: int, workers: int) -> int:
    """Chunk size for `n` items over `workers`: four chunks a worker, capped."""
    return max(1, min(CHUNK_CAP, -(-n // (4 * max(1, workers)))))


def make_bar(progress: bool | Mapping[str, Any], total: int | None) -> Any:
    """A tqdm bar, or None.  `progress` may be a mapping of tqdm options."""
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:
        raise ImportError(
            "map(..., progress=True) draws a tqdm progress bar, but tqdm is not "
            "installed: pip install 'multigil[progress]' (or pip install tqdm)"
        ) from exc
    options = dict(progress) if isinstance(progress, Mapping) else {}
    options.setdefault("total", total)
    options.setdefault("unit", "task")
    return tqdm(**options)


def _length(iterables: tuple[Iterable[Any], ...]) -> int | None:
    """How many argument tuples zip(*iterables) yields, if their lengths say."""
    try:
        return min((len(it) for it in iterables), default=0)  # type: ignore[arg-type]
    except TypeError:
        return None


class MapRun:
    """The chunks of one map call: those sent, and (lazy mode) those to come.

    `notify`, if given, is added as done-callback to every chunk future (the
    unordered iterators wait on what it collects).
    """

    def __init__(self, pool: _Pool, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...], *,
                 chunksize: int | None, buffersize: int | None,
                 progress: bool | Mapping[str, Any],
                 notify: Callable[[Any], object] | None = None) -> None:
        if chunksize is not None:
            if not isinstance(chunksize, int) or isinstance(chunksize, bool):
                raise TypeError("chunksize must be an integer or None")
            if chunksize < 1:
                raise ValueError("chunksize must be >= 1.")
        if buffersize is not None:
            if not isinstance(buffersize, int) or isinstance(buffersize, bool):
                raise TypeError("buffersize must be an integer or None")
            if buffersize < 1:
                raise ValueError("buffersize must be None or > 0")
        if not callable(fn):
            raise TypeError(f"{type(fn).__name__!r} object is not callable")
        self.pool = pool
        self.fn = fn
        self.notify = notify
        self.workers = pool.max_workers
        # submitted chunks not yet consumed, in submission order
        self.live: dict[InterpreterFuture, _Task] = {}
        # the items of live chunks whose arguments were pickled, which the
        # worker may fail to rebuild: then they are sent again one by one
        self.kept: dict[InterpreterFuture, list[tuple[Any, ...]]] = {}
        self.inflight = 0            # items in self.live
        self.source: Iterator[tuple[Any, ...]] | None = None  # lazy mode input
        self.buffersize = buffersize
        self.fixed = chunksize
        self.item_s: float | None = None   # measured seconds an item takes
        self.last_size = 1
        self.cap = CHUNK_CAP
        self.bar = None
        self.error: BaseException | None = None   # see consume()

        if buffersize is None:
            # Collect every input now, as the stdlib's map does; no copy of
            # inputs that know their length.
            zipped = None
            if _length(iterables) is None:
                if len(iterables) == 1:
                    iterables = (list(iterables[0]),)
                else:  # zip stops at the shortest, which may be the only finite one
                    zipped = list(zip(*iterables))
            n = len(zipped) if zipped is not None else _length(iterables) or 0
            self.bar = make_bar(progress, n)
            size = chunksize or auto_chunksize(n, self.workers)
            try:
                for chunk in _chunks(iterables, size, zipped):
                    if not self._send(chunk):
                        break
            except BaseException:
                self.stop()
                raise
        else:
            self.bar = make_bar(progress, _length(iterables))
            self.cap = max(1, min(CHUNK_CAP, buffersize // (2 * self.workers)))
            self.source = iter(zip(*iterables))
            try:
                self._refill()
            except BaseException:
                self.stop()
                raise

    # ----------------------------------------------------------- sending --

    def _send(self, chunk: list[tuple[Any, ...]]) -> bool:
        """Submit one chunk; False if no more should be sent (fn unsendable)."""
        task = self._submit(chunk)
        if task.stage is not None:
            # The chunk could not be encoded: if the function itself cannot
            # cross, this error is the map's; else find the item at fault.
            if task.stage == "function":
                return False
            del self.live[task.future]
            self.kept.pop(task.future, None)
            self.inflight -= len(chunk)
            self._split(chunk, front=False)
        return True

    def _split(self, chunk: list[tuple[Any, ...]], front: bool) -> None:
        """Send the items of a chunk whose arguments could not cross one by
        one, at the end of the live chunks or (`front`) at their head: those
        before the item at fault give their results, and it fails alone, as
        in the stdlib's map.  None of them had run."""
        rest = self.live
        if front:
            self.live = {}
        for item in chunk:
            self._submit([item])
        if front:
            self.live.update(rest)

    def _submit(self, chunk: list[tuple[Any, ...]]) -> _Task:
        task = self.pool.submit(self.fn, chunk, None, chunk=len(chunk))
        fut = task.future
        self.live[fut] = task
        self.inflight += len(chunk)
        if task.pickled and len(chunk) > 1:
            self.kept[fut] = chunk  # in case the worker cannot rebuild them: _split
        if self.bar is not None:
            fut.add_done_callback(partial(self._advance_bar, len(chunk)))
        if self.notify is not None:
            fut.add_done_callback(self.notify)
        return task

    def _advance_bar(self, items: int, fut: InterpreterFuture) -> None:
        bar = self.bar
        if bar is None or fut.cancelled() or (items > 1 and fut.stage == "arguments"):
            return  # a chunk sent again item by item counts then
        bar.update(items)

    def _next_size(self) -> int:
        if self.fixed:
            return self.fixed
        if self.item_s is None:
            return 1
        ideal = int(TARGET_CHUNK_S / max(self.item_s, 1e-9))
        return max(1, min(ideal, self.cap, self.last_size * 2))

    def _refill(self) -> None:
        """Lazy mode: read and send input while the buffer has room."""
        assert self.buffersize is not None
        while self.source is not None and self.inflight < self.buffersize:
            if not self.fixed and len(self.live) >= (
                    2 if self.item_s is None else CHUNKS_AHEAD) * self.workers:
                break  # wait to learn how long an item takes, or for room
            want = self._next_size()
            size = min(want, self.buffersize - self.inflight)
            chunk = list(itertools.islice(self.source, size))
            if not chunk:
                self.source = None
                break
            # What it would have been with room to spare: a chunk cut short
            # by the buffer must not restart the growth from its size.
            self.last_size = want
            if not self._send(chunk):
                self.source = None
            if len(chunk) < size:
                self.source = None

    # --------------------------------------------------------- consuming --

    def __bool__(self) -> bool:
        return bool(self.live)

    def head(self) -> InterpreterFuture:
        return next(iter(self.live))

    def consume(self, fut: InterpreterFuture) -> list[Any]:
        """Take a finished chunk out and return its results; the error that
        ended it, if any, is for :meth:`raise_error` to raise after them."""
        task = self.live.pop(fut)
        kept = self.kept.pop(fut, None)
        self.inflight -= task.chunk
        results: list[Any]
        if kept is not None and fut.stage == "arguments":
            # The worker could not rebuild the chunk's arguments (none of it ran).
            self._split(kept, front=True)
            return []
        try:
            results, self.error = fut.result(0)
        except BaseException as exc:  # cancelled, or the whole chunk failed
            results, self.error = [], exc
        if self.source is not None:
            if task.stage is None:
                self._measure(task)
            self._refill()
        return results

    def raise_error(self) -> None:
        """Raise the error of the chunk consumed last, if it had one."""
        exc, self.error = self.error, None
        if exc is not None:
            try:
                raise exc
            finally:
                exc = None  # no reference cycle through this frame

    def _measure(self, task: _Task) -> None:
        t0, t1 = task.started, task.ended
        if t0 and t1 > t0:
            per = (t1 - t0) / task.chunk
            # Down at once, up by halves: the first chunk of a fresh worker
            # also pays for its imports, and chunks grow only twofold anyway.
            old = self.item_s
            self.item_s = per if old is None or per < old else (old + per) / 2

    def stop(self, interrupt: bool = False) -> None:
        """Cancel what was not consumed (interrupt: running chunks too)."""
        self.source = None
        live, self.live = self.live, {}
        self.kept = {}
        for fut in live:
            fut.cancel(interrupt=interrupt)
        self.inflight = 0
        bar, self.bar = self.bar, None
        if bar is not None:
            bar.close()


def _chunks(iterables: tuple[Iterable[Any], ...], size: int,
            zipped: list[tuple[Any, ...]] | None = None) -> Iterator[list[tuple[Any, ...]]]:
    islice = itertools.islice
    if zipped is not None:
        for i in range(0, len(zipped), size):
            yield zipped[i:i + size]
    elif len(iterables) == 1:
        it = iter(iterables[0])
        while chunk := [(x,) for x in islice(it, size)]:
            yield chunk
    else:
        z = zip(*iterables)
        while chunk := list(islice(z, size)):
            yield chunk


def iterate(run: MapRun, end_time: float | None,
            done_q: queue.SimpleQueue[InterpreterFuture] | None = None,
            keepalive: object = None) -> Iterator[Any]:
    """The results of a map call, in input order or (unordered) as chunks finish.

    Stdlib semantics: an item whose call raised raises when it is reached,
    and iteration ends there; TimeoutError if a result is not there by
    `end_time`; when the iterator is closed early, the chunks not started are
    cancelled.  Ctrl-C (KeyboardInterrupt) while waiting also interrupts the
    chunks that are running.  Unordered runs pass `done_q`, which the run's
    notify callback fills with the chunks as they finish.  `keepalive` (the
    executor) lives as long as the iterator.
    """
    try:
        while run:
            if done_q is None:
                fut = run.head()
                if not fut.done():
                    _wait(fut, end_time)
            else:
                try:
                    fut = done_q.get(timeout=None if end_time is None
                                     else max(0.0, end_time - time.monotonic()))
                except queue.Empty:
                    raise TimeoutError from None
                if fut not in run.live:
                    continue
            yield from handing_out(run.consume(fut))
            del fut
            run.raise_error()
    except KeyboardInterrupt:
        run.stop(interrupt=True)
        raise
    finally:
        run.stop()


_END = object()


def handing_out(results: list[Any]) -> Iterator[Any]:
    """The items of `results`, each let go of as it is handed out: the
    iterator of a map keeps no reference to a result once yielded (as the
    stdlib's, bpo-14406).  The list is emptied."""
    items = collections.deque(results)
    results.clear()
    items.append(_END)
    return iter(items.popleft, _END)


def _wait(fut: InterpreterFuture, end_time: float | None) -> None:
    timeout = None if end_time is None else max(0.0, end_time - time.monotonic())
    try:
        fut.exception(timeout)
    except CancelledError:
        pass
