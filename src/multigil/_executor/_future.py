"""The executor's future.

:class:`InterpreterFuture` is a :class:`concurrent.futures.Future` with one
addition: ``cancel(interrupt=True)`` also stops a task that is already running
(the worker raises :class:`~multigil.TaskCancelled` in it and goes on with the
next task).  Plain ``cancel()`` behaves exactly as in the standard library,
and ``result()`` as in 3.14 (an exception that is false still raises).

The future knows nothing of pools: to stop its running task it calls the one
callable the pool gave it (``_stop``).  The state changes the pool makes go
through the ``_mg_*`` methods below, under the future's own condition, so that
a cancellation racing with a worker that starts or finishes the task always
leaves the future in one consistent state.  They use the private state of
:class:`concurrent.futures.Future` (``_state``, ``_condition``, ``_waiters``),
which has been the same from Python 3.2 to 3.14.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, InvalidStateError
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from typing import Any, Callable

from .. import _core

__all__ = ["InterpreterFuture"]

#: How long result() and exception() spin for a task to end before they
#: sleep: a round trip's worth.  They spin with the GIL released and yield
#: the CPU on each turn (worker.c says why and how).
SPIN_S = 100e-6


class InterpreterFuture(Future):  # type: ignore[type-arg]
    """The future of a task run by :class:`multigil.InterpreterPoolExecutor`.

    Everything :class:`concurrent.futures.Future` does, and
    ``cancel(interrupt=True)`` to stop the task even while it runs.
    """

    # Given by the pool when a worker starts the task: ``_stop(future)`` stops
    # the task while it runs (the future becomes cancelled, the worker is
    # interrupted); False if it was not running any more.  Called without the
    # future's condition held.
    _stop: Callable[[InterpreterFuture], bool] | None = None
    # Set by the pool before it completes a failed future: see `stage`.
    _mg_stage: str | None = None
    # Set by the pool when the task starts: see `ran_in`.
    _mg_ran_in: str | None = None
    # False for a task that the pool's fallback runs: no worker of the C core
    # completes it, so result() has nothing to spin for.
    _mg_spin = True

    @property
    def ran_in(self) -> str | None:
        """Where the task ran: ``'interpreter'``, or ``'process'`` when the
        pool's fallback ran it (``InterpreterPoolExecutor(fallback="process")``;
        ``'thread'`` in a Dask worker, whose fallback runs tasks in threads).
        None until it starts, and for a task that never started."""
        return self._mg_ran_in

    @property
    def stage(self) -> str | None:
        """Where the task failed, once its future holds the error.

        ``'function'``: the function could not be rebuilt in the worker (or
        sent there), its module's import included; ``'arguments'``: the
        arguments could not be.  In both cases nothing of the task ran.
        ``'call'``: the task ran and raised.  ``'result'``: it ran, and its
        result could not be sent back.  None while it is pending or running,
        and when it succeeded or was cancelled.
        """
        return self._mg_stage

    def cancel(self, *, interrupt: bool = False) -> bool:
        """Cancel the task.

        A task still waiting in the queue is cancelled at once, and ``True``
        returned.  A task that is running is left alone (``False``, as in the
        standard library) unless ``interrupt`` is true: then
        :class:`~multigil.TaskCancelled` is raised inside it, at the worker's
        next bytecode boundary, the future becomes cancelled at once, and the
        worker goes on with the next task.  Returns ``False`` for a task that
        has finished.
        """
        with self._condition:
            state = self._state
            if state == FINISHED:
                return False
            if state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return True
            if state == PENDING:
                # Tell waiters now: the task will never run (the worker that
                # meets it in the queue skips it), so wait() and as_completed()
                # need not wait for a worker to get that far.
                self._state = CANCELLED_AND_NOTIFIED
                for waiter in self._waiters:
                    waiter.add_cancelled(self)
                self._condition.notify_all()
        if state == PENDING:
            self._invoke_callbacks()  # type: ignore[attr-defined]
            return True
        # RUNNING
        stop = self._stop
        if not interrupt or stop is None:
            return False
        # False from stop(): the task has just ended, or someone else stopped it.
        return stop(self) or self.cancelled()

    def result(self, timeout: float | None = None) -> Any:
        if self._state in (PENDING, RUNNING) and timeout != 0 and self._mg_spin:
            self._spin()
        if self._state == FINISHED and self._exception is None:
            # Written before _state, by a thread holding this interpreter's
            # GIL: no need for the condition's lock to read it.
            return self._result
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state in (PENDING, RUNNING) and timeout != 0 and self._mg_spin:
            self._spin()
        return super().exception(timeout)

    def _spin(self) -> None:
        """Wait up to SPIN_S for the task to end without sleeping: a worker
        that completes it then wakes nobody, and finds the GIL free."""
        seen = _core.completions()
        end = time.perf_counter() + SPIN_S
        while self._state in (PENDING, RUNNING):
            left = end - time.perf_counter()
            if left <= 0:
                return
            seen = _core.spin_for_completion(seen, left)

    def _Future__get_result(self) -> Any:
        # What Future.result() returns or raises once done.  Before Python
        # 3.14 it tested ``if self._exception:``, so an exception whose
        # __bool__ or __len__ says false was dropped and result() returned
        # None (gh-132063); on every version here it propagates.
        exc = self._exception
        if exc is not None:
            try:
                raise exc
            finally:
                del exc     # no cycle through this frame
        return self._result

    # ------------------------------------------------------------ pool side --

    def _mg_start(self) -> bool:
        """PENDING -> RUNNING; True if RUNNING already (the pool marks a task
        that starts a worker RUNNING at once); False (and waiters told) if it
        was cancelled or completed meanwhile."""
        with self._condition:
            state = self._state
            if state == PENDING:
                self._state = RUNNING
                return True
            if state == RUNNING:
                return True
            if state == CANCELLED:  # through Future.cancel(self)
                self._state = CANCELLED_AND_NOTIFIED
                for waiter in self._waiters:
                    waiter.add_cancelled(self)
        return False

    def _mg_fail_pending(self, exc: BaseException) -> bool:
        """Fail a task that no worker has taken (broken pool)."""
        with self._condition:
            if self._state == PENDING:
                self._state = RUNNING  # so that set_exception() accepts it
            elif self._state != RUNNING:
                return False
        self._mg_complete(exc=exc)
        return True

    def _mg_complete(self, result: Any = None, exc: BaseException | None = None,
                     stage: str | None = None) -> None:
        """Record the worker's outcome (a failure: where it failed, `stage`);
        dropped if the task was stopped meanwhile."""
        try:
            if exc is None:
                self.set_result(result)
            else:
                self._mg_stage = stage  # before the waiters wake
                self.set_exception(exc)
        except InvalidStateError:
            # Cancelled or timed out while it ran: the outcome is not wanted.
            self._mg_stage = None

    def _mg_finish_stopped(self, exc: BaseException | None = None) -> bool:
        """RUNNING -> cancelled, or failed with `exc` (a timeout).

        False if the task is no longer running.
        """
        with self._condition:
            if self._state != RUNNING:
                return False
            if exc is None:
                self._state = CANCELLED_AND_NOTIFIED
                for waiter in self._waiters:
                    waiter.add_cancelled(self)
            else:
                self._exception = exc
                self._state = FINISHED
                for waiter in self._waiters:
                    waiter.add_exception(self)
            self._condition.notify_all()
        self._invoke_callbacks()  # type: ignore[attr-defined]
        return True
