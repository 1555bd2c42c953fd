"""What crosses with executor tasks: large arguments and results cost one copy,
and the worker loop runs the releases owed to its interpreter.

One copy is checked by identity, never by time: a large ``bytes`` or ``str``
travels as a *lend*, a reference to the sender's own object that the blob
holds until the receiver has copied it.  While a task waits in the queue the
caller's object has one more reference (the blob's, not a copy), and once the
worker has copied it that reference is dropped in the caller's interpreter.
"""

from __future__ import annotations

import sys

import pytest

import executor_tasks as tasks
from multigil import Event, InterpreterPoolExecutor, _core

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 60
BIG = 1 << 20


@pytest.fixture
def pool():
    with InterpreterPoolExecutor(1) as p:
        yield p


def worker_id(pool: InterpreterPoolExecutor) -> int:
    return pool.submit(tasks.interp_id).result(TIMEOUT)


def blocked(pool: InterpreterPoolExecutor) -> tuple[Event, object]:
    """Keep the pool's one worker busy until the returned event is set."""
    started, release = Event(), Event()
    fut = pool.submit(tasks.wait_event, started, release)
    assert started.wait(TIMEOUT)
    return release, fut


def test_submit_lends_large_arguments_until_the_worker_copied_them(pool) -> None:
    payload = bytes(range(256)) * (BIG // 256)
    text = "\u20ac" * BIG
    before = sys.getrefcount(payload), sys.getrefcount(text)
    release, first = blocked(pool)
    futs = [pool.submit(len, payload), pool.submit(tasks.kw, 1, b=payload, c=text),
            pool.schedule(len, (text,), timeout=TIMEOUT)]
    # Queued: the tasks hold the caller's objects themselves, not copies.
    assert (sys.getrefcount(payload), sys.getrefcount(text)) == (before[0] + 2, before[1] + 2)
    release.set()
    first.result(TIMEOUT)
    assert futs[0].result(TIMEOUT) == BIG
    assert futs[1].result(TIMEOUT) == (1, payload, text)
    assert futs[2].result(TIMEOUT) == BIG
    # The worker copied them, and the caller dropped its references.
    assert (sys.getrefcount(payload), sys.getrefcount(text)) == before


def test_map_lends_large_items(pool) -> None:
    items = [bytes([i]) * BIG for i in range(4)]
    before = [sys.getrefcount(x) for x in items]
    release, first = blocked(pool)
    it = pool.map(len, items, chunksize=2)
    # Each chunk holds the items (in lists, which calls never borrow from).
    assert [sys.getrefcount(x) for x in items] == [n + 1 for n in before]
    release.set()
    first.result(TIMEOUT)
    assert list(it) == [BIG] * 4
    assert [sys.getrefcount(x) for x in items] == before


def test_cancelled_tasks_drop_what_they_lent(pool) -> None:
    payload = b"c" * BIG
    before = sys.getrefcount(payload)
    release, first = blocked(pool)
    futs = [pool.submit(len, payload) for _ in range(3)]
    assert all(f.cancel() for f in futs)
    release.set()
    first.result(TIMEOUT)
    pool.submit(tasks.noop).result(TIMEOUT)   # the worker has met them all
    assert sys.getrefcount(payload) == before


def test_large_results_are_lent_by_the_worker_and_released_there() -> None:
    data = b"r" * BIG
    with InterpreterPoolExecutor(1, shared={"data": data, "text": "t" * BIG}) as pool:
        wid = worker_id(pool)
        refs = pool.submit(tasks.main_value_refcount, "data").result(TIMEOUT)
        seen: list[int] = []
        release, first = blocked(pool)
        futs = [pool.submit(tasks.main_value, name) for name in ("data", "text")]
        for fut in futs:
            # Done-callbacks run while the worker is still attached to the
            # caller: the result was copied out of the worker's own object,
            # whose release is owed to the worker now.
            fut.add_done_callback(lambda f: seen.append(_core._exports(wid)))
        release.set()
        first.result(TIMEOUT)
        assert [f.result(TIMEOUT) for f in futs] == [data, "t" * BIG]
        assert seen == [1, 1]
        assert pool.submit(tasks.main_value_refcount, "data").result(TIMEOUT) == refs
        assert _core._exports(wid) == 0


def test_worker_releases_views_of_its_memory_that_the_caller_dropped(pool) -> None:
    wid = worker_id(pool)
    for _ in range(100):
        view = pool.submit(tasks.view_of_new_buffer, BIG).result(TIMEOUT)
        assert view.nbytes == BIG
        assert _core._exports(wid) == 1
        del view
        # The next task the worker runs releases it (it never enters its
        # interpreter again, so its loop runs what is owed to it).
        pool.submit(tasks.noop).result(TIMEOUT)
        assert _core._exports(wid) == 0
