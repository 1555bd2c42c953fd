"""The fallback's processes: a process pool with a pipe pair per process.

Data flow::

    submitting thread ── pickled task ──► a free process's call pipe
         │ (no process free)                          │
         ▼                                            ▼
      waiting ──► reader thread ◄── result pipe ◄── process (serve: one task
                  completes the reply,                at a time)
                  hands the next waiting task

A task goes straight to a free process: the thread that submits it pickles
it and writes it to that process's pipe.  While every process is busy, tasks
wait here, in order, and the one reader thread -- which reads every
process's results -- gives the next one to a process as the process
reports.  A ``ProcessPoolExecutor`` passes every task through its manager
thread and its call queue's feeder thread, and every result through the
manager thread again: two thread hand-offs more a task.

The task's reply goes RUNNING as the task is written to its process (a
task that was cancelled while it waited is dropped then), and is completed
by the reader thread.  Processes start as tasks need them, up to the
pool's size, with the caller's multiprocessing context (forkserver: ``fork``
with interpreters alive crashes the child).

With `max_tasks`, a process that has run that many tasks is told to end
(its call pipe is closed) and another takes its place, as workers of the
pool with ``max_tasks_per_worker`` start afresh.

A process that dies fails the one task it ran, with ``BrokenProcessPool``;
the pool goes on, and starts another process when tasks wait.  A process
that dies or fails while it is being set up (its initializer raised) fails
the tasks waiting then: they would only meet the same fate.

This module is the main process's side; ``_fallback_worker.serve`` is the
processes'.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import threading
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.reduction import ForkingPickler
from typing import Any, Protocol

from .._errors import exception_from
from . import _fallback_worker
from ._fallback_worker import DONE, FAILED, READY, SETUP_FAILED

__all__ = ["ProcessPool", "Reply"]

LOGGER = logging.getLogger("multigil")


class Reply(Protocol):
    """Where the pool reports on a task (``_fallback._Reply``)."""

    def set_running_or_notify_cancel(self) -> bool: ...
    def set_result(self, outcome: Any) -> None: ...
    def set_exception(self, exc: BaseException, stage: str | None = None) -> None: ...


class _Item:
    """A task on its way: its reply, the call pickled (until it is sent)."""

    __slots__ = ("reply", "data", "sent")

    def __init__(self, reply: Reply, data: Any) -> None:
        self.reply = reply
        self.data = data
        self.sent = False


class _Process:
    """One process of the pool, its two pipes (this side's ends), its task."""

    __slots__ = ("process", "calls", "calls_lock", "results", "item", "ready",
                 "set_up_failed", "dead", "tasks", "retired")

    def __init__(self, process: Any, calls: Any, results: Any) -> None:
        self.process = process
        self.calls = calls           # written by whoever gave it `item`, closed by
        self.calls_lock = threading.Lock()  # ... any thread: one at a time
        self.results = results       # read by the reader thread only
        self.item: _Item | None = None
        self.ready = False           # set up: it takes tasks
        self.set_up_failed = False
        self.dead = False
        self.tasks = 0               # tasks it has run
        self.retired = False         # told to end after max_tasks (uncounted then)

    def send(self, item: _Item) -> bool:
        """Write `item` to the process (it is reading: it has no other task);
        False if the process has ended (the item is as it was)."""
        with self.calls_lock:
            if self.calls.closed:
                return False
            try:
                self.calls.send_bytes(item.data)
            except OSError:
                return False
            item.sent = True
            item.data = None
            return True

    def end(self) -> None:
        """Close the process's call pipe: its serve() returns when it reads that."""
        with self.calls_lock:
            self.calls.close()


class ProcessPool:
    """Up to `size` processes of `ctx` running ``_fallback_worker.serve``
    with `setup` (what follows its pipes), each stoppable through `board`,
    each replaced after `max_tasks` tasks (0: never)."""

    def __init__(self, size: int, ctx: Any, board: _fallback_worker.Board,
                 setup: tuple[Any, ...], max_tasks: int = 0) -> None:
        self.size = size
        self.max_tasks = max_tasks
        self.ctx = ctx
        self.board = board
        self.setup = setup
        # One lock guards the state below; the reader thread owns the
        # selector and the processes' result pipes.
        self.lock = threading.Lock()
        self.count = 0               # processes started or starting, not dead
        self.starting = 0            # ... of those, not set up yet
        self.idle: list[_Process] = []
        self.added: list[_Process] = []  # started, for the reader to watch
        self.waiting: deque[_Item] = deque()
        self.closing = False
        self.ended = False           # the reader thread has ended
        self.broken: str | None = None   # ... on this error (see _abandon)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self.reader = threading.Thread(target=self._read, name="multigil-fallback-reader",
                                       daemon=True)
        self.reader.start()

    # ----------------------------------------------------- any thread --

    def submit(self, reply: Reply, call: tuple[Any, ...]) -> None:
        """Run `call` (``_fallback_worker.run``'s arguments) in a process."""
        try:
            item = _Item(reply, ForkingPickler.dumps(call))
        except BaseException as exc:
            reply.set_exception(exc, "arguments")
            return
        with self.lock:
            if self.broken is not None:
                raise BrokenProcessPool(f"the process fallback failed: {self.broken}")
            if self.closing:
                raise RuntimeError("cannot schedule new futures after shutdown")
            proc = self.idle.pop() if self.idle else None
            if proc is not None:
                proc.item = item
            else:
                self.waiting.append(item)
                spawn = self._should_spawn()
        if proc is not None:
            self._run(proc, item)
        elif spawn:
            self._spawn()

    def close(self, wait: bool) -> None:
        """Let the processes end once their tasks are done (`wait`: wait for that)."""
        with self.lock:
            self.closing = True
            idle, self.idle = self.idle, []
        for proc in idle:
            proc.end()
        self._wake()
        if wait and threading.current_thread() is not self.reader:
            self.reader.join()

    def _should_spawn(self) -> bool:
        """With the lock: whether a waiting task needs one more process (counted then)."""
        if self.count < self.size and self.starting < len(self.waiting):
            self.count += 1
            self.starting += 1
            return True
        return False

    def _spawn(self) -> None:
        """Start a process (counted already)."""
        ends: list[Any] = []
        try:
            calls_r, calls_w = self.ctx.Pipe(duplex=False)
            ends += calls_r, calls_w
            results_r, results_w = self.ctx.Pipe(duplex=False)
            ends += results_r, results_w
            process = self.ctx.Process(target=_fallback_worker.serve,
                                       args=(calls_r, results_w, self.board, *self.setup))
            process.start()
        except BaseException as exc:
            for end in ends:
                end.close()
            self._not_started(f"could not start a process: {type(exc).__name__}: {exc}", exc)
            return
        calls_r.close()     # the process's ends: its exit closes them for good
        results_w.close()
        with self.lock:
            ended = self.ended
            if not ended:
                self.added.append(_Process(process, calls_w, results_r))
        if ended:  # the reader has ended meanwhile (see _abandon): no one would read it
            process.kill()
            calls_w.close()
            results_r.close()
            self._not_started(f"failed: {self.broken or 'its reader has ended'}", None)
            return
        self._wake()

    def _not_started(self, why: str, cause: BaseException | None) -> None:
        """A process counted by _should_spawn did not start: uncount it, and
        fail the waiting tasks if no other process will run them."""
        with self.lock:
            self.count -= 1
            self.starting -= 1
            orphans = self._orphans()
        self._fail(orphans, f"the process fallback {why}", cause)

    def _run(self, proc: _Process, item: _Item | None) -> None:
        """Write `item` (given to `proc`) to its process; a task cancelled
        while it waited is dropped, and the next one taken."""
        while item is not None:
            if item.reply.set_running_or_notify_cancel():
                if not proc.send(item):
                    self._put_back(proc, item)
                return
            item = self._next(proc)

    def _put_back(self, proc: _Process, item: _Item) -> None:
        """`proc` ended before `item` could be written to it: the item waits
        again, first (the reader counts the process out)."""
        with self.lock:
            if proc.item is item:
                proc.item = None
            broken = self.broken
            if broken is None:
                self.waiting.appendleft(item)
            spawn = broken is None and self._should_spawn()
        if broken is not None:
            self._fail([item], f"the process fallback failed: {broken}", None)
        elif spawn:
            self._spawn()

    def _next(self, proc: _Process) -> _Item | None:
        """The next waiting task, given to `proc`; else `proc` is free."""
        with self.lock:
            item = self.waiting.popleft() if self.waiting and not proc.dead else None
            proc.item = item
            if item is not None or proc.dead:
                return item
            if not self.closing:
                self.idle.append(proc)
                return None
        proc.end()
        return None

    def _take_waiting(self) -> list[_Item]:
        """With the lock: the waiting tasks, taken."""
        items = list(self.waiting)
        self.waiting.clear()
        return items

    def _orphans(self) -> list[_Item]:
        """With the lock: the waiting tasks, taken, if no process will run them."""
        return [] if self.count else self._take_waiting()

    @staticmethod
    def _fail(items: list[_Item], message: str, cause: BaseException | None) -> None:
        """Fail each of `items` with a BrokenProcessPool of its own."""
        for item in items:
            exc = BrokenProcessPool(message)
            exc.__cause__ = cause
            item.reply.set_exception(exc)

    def _wake(self) -> None:
        with self.lock:
            if self.ended:
                return  # its pipe is closed: the number may be another file's now
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # awake already

    # -------------------------------------------------- reader thread --

    def _read(self) -> None:
        try:
            while self._read_once():
                pass
        except BaseException as exc:  # never leave a future pending
            LOGGER.critical("multigil: the process fallback's reader failed", exc_info=True)
            self._abandon(exc)
        finally:
            with self.lock:
                self.ended = True
                self.selector.close()
                os.close(self._wake_r)
                os.close(self._wake_w)

    def _read_once(self) -> bool:
        """Handle what is ready; False once the pool is closed and its processes gone."""
        ready = self.selector.select()
        deaths = []
        for key, _ in ready:
            proc = key.data
            if proc is None:
                self._take_added()
            elif key.fd == proc.results.fileno():
                if not self._receive(proc):
                    deaths.append(proc)
            else:
                deaths.append(proc)   # its sentinel: the process ended
        for proc in dict.fromkeys(deaths):
            self._died(proc)
        with self.lock:
            over = self.closing and self.count == 0
        # ... and the processes told to end are reaped (the wake-up pipe is
        # all the selector watches)
        return not (over and len(self.selector.get_map()) == 1)

    def _take_added(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass
        with self.lock:
            added, self.added = self.added, []
        for proc in added:
            self.selector.register(proc.results.fileno(), selectors.EVENT_READ, proc)
            self.selector.register(proc.process.sentinel, selectors.EVENT_READ, proc)

    def _receive(self, proc: _Process) -> bool:
        """Read and handle one message of `proc`; False at the end of its pipe."""
        try:
            data = proc.results.recv_bytes()
        except (EOFError, OSError):
            return False
        try:
            message = ForkingPickler.loads(data)
        except BaseException as exc:  # a result this process cannot rebuild
            self._report(proc, None, exc, "result")
            return True
        kind = message[0]
        if kind == DONE:
            self._report(proc, message[1], None, None)
        elif kind == FAILED:
            self._report(proc, None, exception_from(message[2]), message[1])
        elif kind == READY:
            with self.lock:
                proc.ready = True
                self.starting -= 1
            self._run(proc, self._next(proc))
        elif kind == SETUP_FAILED:
            cause = exception_from(message[1])
            with self.lock:
                proc.set_up_failed = True
                self.starting -= 1
                orphans = self._take_waiting()
            self._fail(orphans, "the process fallback could not set up a process: "
                       f"{type(cause).__name__}: {cause}", cause)
        return True

    def _report(self, proc: _Process, outcome: Any, exc: BaseException | None,
                stage: str | None) -> None:
        """`proc`'s task ended: give it the next one, then complete the reply."""
        item = proc.item
        proc.tasks += 1
        if self.max_tasks and proc.tasks >= self.max_tasks:
            self._retire(proc)
        else:
            self._run(proc, self._next(proc))
        if item is None:
            return
        if exc is None:
            item.reply.set_result(outcome)
        else:
            item.reply.set_exception(exc, stage)

    def _retire(self, proc: _Process) -> None:
        """`proc` has run its max_tasks: it ends, another starts if tasks wait."""
        with self.lock:
            proc.item = None
            proc.retired = True
            self.count -= 1
            spawn = self._should_spawn()
        proc.end()
        if spawn:
            self._spawn()

    def _died(self, proc: _Process) -> None:
        """`proc`'s process ended: fail its task (and, if it never got set
        up, the waiting ones); start another if tasks wait."""
        for fd in (proc.results.fileno(), proc.process.sentinel):
            try:
                self.selector.unregister(fd)
            except (KeyError, ValueError):
                pass
        with self.lock:
            proc.dead = True  # it gets no task any more
        proc.end()  # from now on a task written to it comes back (_put_back)
        # What it sent before it ended still counts.
        while True:
            try:
                if not proc.results.poll(0) or not self._receive(proc):
                    break
            except (EOFError, OSError):
                break
        pid = proc.process.pid
        self.board.release(pid)  # before the pid can be another process's
        proc.process.join()
        how = _how_it_ended(proc.process.exitcode)
        with self.lock:
            if not proc.retired:
                self.count -= 1
            if not proc.ready and not proc.set_up_failed:
                self.starting -= 1
            if proc in self.idle:
                self.idle.remove(proc)
            item, proc.item = proc.item, None
            if item is not None and not item.sent:
                item = None  # it never reached the process: its sender puts it back
            orphans = [] if proc.ready or proc.set_up_failed else self._take_waiting()
            spawn = self._should_spawn()
        proc.results.close()
        if item is not None:
            self._fail([item], f"the process fallback's process {pid} {how} while it ran this "
                       "task; the fallback's other tasks go on", None)
        self._fail(orphans, f"the process fallback's process {pid} {how} while it was being "
                   "set up", None)
        if spawn:
            self._spawn()

    def _abandon(self, exc: BaseException) -> None:
        """The reader cannot go on (a bug): fail every task, end the processes."""
        with self.lock:
            self.closing = True
            self.ended = True  # no process starts, no task waits any more
            self.broken = f"{type(exc).__name__}: {exc}"
            items = self._take_waiting()
            procs = list(self.idle) + list(self.added)
        for key in list(self.selector.get_map().values()):
            if key.data is not None:
                procs.append(key.data)
        for proc in dict.fromkeys(procs):
            if proc.item is not None:
                items.append(proc.item)
            proc.process.kill()
            proc.end()
        self._fail(items, f"the process fallback failed: {self.broken}", exc)


def _how_it_ended(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
