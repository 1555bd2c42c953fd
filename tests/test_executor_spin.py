"""result() spins briefly before it sleeps, on a count of finished tasks that
workers bump once they have left the caller's interpreter (worker.c).  What
it must keep: results, timeouts and cancellation behave as without it."""

from __future__ import annotations

import concurrent.futures as cf

import pytest

import executor_tasks as tasks
from multigil import Event, InterpreterPoolExecutor, _core

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 60


@pytest.fixture(scope="module")
def pool():
    with InterpreterPoolExecutor(1) as p:
        yield p


def test_workers_count_the_tasks_they_finish(pool):
    seen = _core.completions()
    assert pool.submit(tasks.square, 3).result(TIMEOUT) == 9
    # Bumped once the worker has left this interpreter, maybe just after the
    # result arrived: wait for it (spinning returns as soon as it changes).
    assert _core.spin_for_completion(seen, TIMEOUT) == seen + 1
    assert _core.spin_for_completion(seen + 1, 0.001) == seen + 1     # nothing else ran
    assert _core.spin_for_completion(seen + 1, 0) == seen + 1


def test_timeouts_still_hold_while_a_task_runs(pool):
    started, release = Event(), Event()
    fut = pool.submit(tasks.wait_event, started, release, "late")
    assert started.wait(TIMEOUT)
    with pytest.raises(cf.TimeoutError):
        fut.result(timeout=0.01)
    with pytest.raises(cf.TimeoutError):
        fut.exception(timeout=0.01)
    with pytest.raises(cf.TimeoutError):
        fut.result(timeout=0)
    release.set()
    assert fut.result(TIMEOUT) == "late"
    assert fut.exception(0) is None


def test_cancelled_and_failed_futures_raise_as_before(pool):
    started, release = Event(), Event()
    first = pool.submit(tasks.wait_event, started, release)
    queued = pool.submit(tasks.noop)
    assert started.wait(TIMEOUT)
    assert queued.cancel()
    with pytest.raises(cf.CancelledError):
        queued.result(TIMEOUT)
    release.set()
    first.result(TIMEOUT)
    with pytest.raises(ValueError, match="bad item 2"):
        pool.submit(tasks.fail_on, 2, 2).result(TIMEOUT)
    assert isinstance(pool.submit(tasks.fail_on, 2, 2).exception(TIMEOUT), ValueError)
