"""Tests of multigil's cross-interpreter Lock, RLock, Event, Semaphore,
BoundedSemaphore and Condition (src/multigil/_core/sync.h: lock.c, event.c, semaphore.c, condition.c).

Synchronisation in these tests is by the primitives under test and by
queues, never by sleeping; the few timed waits measure timeouts or give a
blocked thread a chance to be observed blocked, and stay correct if it is not.
"""

from __future__ import annotations

import _thread
import threading
import time

import pytest
from helpers import ExecInThread

import multigil
from multigil._errors import QueueEmpty

pytestmark = pytest.mark.timeout(60)

Lock, RLock, Event = multigil.Lock, multigil.RLock, multigil.Event
Semaphore, BoundedSemaphore = multigil.Semaphore, multigil.BoundedSemaphore
Condition, Queue = multigil.Condition, multigil.Queue

# Tolerance for "waited exactly this long": late wakeups on a loaded 2-core CI
# machine can take tens of milliseconds; an early return is always a bug.
LATE = 0.25




def _in_thread(fn, *args):  # type: ignore[no-untyped-def]
    """Run fn(*args) in a new thread; return (thread, result list)."""
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(fn(*args)))
    t.start()
    return t, out


def _assert_waited(t0: float, timeout: float) -> None:
    elapsed = time.monotonic() - t0
    assert timeout <= elapsed < timeout + LATE, elapsed


# --------------------------------------------------------------------------
# Common: id, equality, repr
# --------------------------------------------------------------------------


@pytest.mark.parametrize("factory", [Lock, RLock, Event, Semaphore, BoundedSemaphore, Condition])
def test_identity(factory) -> None:  # type: ignore[no-untyped-def]
    a, b = factory(), factory()
    assert isinstance(a.id, int) and a.id != b.id
    assert a == a and a != b
    assert hash(a) == hash(a.id)
    assert f"id={a.id}" in repr(a)
    # a wrapper rebuilt from the same raw object (through a queue) is equal
    q = Queue()
    q.put(a)
    again = q.get()
    assert again == a and again.id == a.id and type(again) is type(a)


# --------------------------------------------------------------------------
# Lock
# --------------------------------------------------------------------------


def test_lock_basics() -> None:
    lock = Lock()
    assert not lock.locked()
    assert lock.acquire() is True
    assert lock.locked()
    assert lock.acquire(False) is False
    assert lock.acquire(blocking=False) is False
    lock.release()
    assert not lock.locked()
    with pytest.raises(RuntimeError):
        lock.release()
    with lock:
        assert lock.locked()
    assert not lock.locked()
    assert "unlocked" in repr(lock)


def test_lock_argument_errors() -> None:
    lock = Lock()
    with pytest.raises(ValueError, match="non-blocking"):
        lock.acquire(False, 1)
    with pytest.raises(ValueError):
        lock.acquire(timeout=-2)
    with pytest.raises(TypeError):
        lock.acquire(timeout="x")
    with pytest.raises(TypeError):
        lock.acquire(1, 2, 3)
    with pytest.raises(TypeError):
        lock.acquire(bogus=1)
    with pytest.raises(TypeError):
        Lock(1)
    assert not lock.locked()


def test_lock_timeout_is_exact() -> None:
    lock = Lock()
    lock.acquire()
    t0 = time.monotonic()
    assert lock.acquire(timeout=0.3) is False
    _assert_waited(t0, 0.3)
    t0 = time.monotonic()
    assert lock.acquire(True, 0) is False
    assert time.monotonic() - t0 < LATE
    lock.release()


def test_lock_released_by_other_thread_wakes_waiter() -> None:
    lock = Lock()
    lock.acquire()
    t, out = _in_thread(lock.acquire, True, 30)
    # any thread may release a Lock (threading.Lock semantics)
    releaser = threading.Thread(target=lock.release)
    releaser.start()
    releaser.join(30)
    t.join(30)
    assert out == [True]
    assert lock.locked()


def test_ctrl_c_interrupts_lock_acquire() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are handled in the main thread only")
    lock = Lock()
    lock.acquire()
    timer = threading.Timer(0.1, _thread.interrupt_main)
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            lock.acquire()
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 5
    assert lock.locked()
    lock.release()


def test_lock_counter_threads() -> None:
    lock = Lock()
    box = [0]

    def work() -> None:
        for _ in range(20_000):
            with lock:
                box[0] += 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert box[0] == 80_000


def _shared_counter():  # type: ignore[no-untyped-def]
    """8 zero bytes that every interpreter sees as the same memory."""
    return memoryview(multigil.SharedBuffer(8))


_INCREMENT = """
for _ in range(count):
    with lock:
        v = int.from_bytes(view[:8], 'little')
        view[:8] = (v + 1).to_bytes(8, 'little')
"""


@pytest.mark.parametrize("factory", [Lock, RLock, lambda: Semaphore(1)])
def test_counter_across_two_interpreters_is_exact(interps, factory) -> None:  # type: ignore[no-untyped-def]
    """100,000 read-modify-write increments from 2 interpreters running in
    parallel (own GILs): exact only if the lock really is one lock."""
    a, b = interps(2)
    view = _shared_counter()
    lock = factory()
    for interp in (a, b):
        interp.prepare_main(view=view, lock=lock, count=50_000)
    runners = [ExecInThread(interp, _INCREMENT) for interp in (a, b)]
    for r in runners:
        r.join(120)
    assert int.from_bytes(view[:8], "little") == 100_000


def test_lock_held_in_one_interpreter_blocks_another(interps) -> None:  # type: ignore[no-untyped-def]
    (interp,) = interps(1)
    lock, out = Lock(), Queue()
    interp.prepare_main(lock=lock, out=out)
    lock.acquire()
    interp.exec("out.put(lock.acquire(False)); out.put(lock.locked())")
    assert out.get_nowait() is False
    assert out.get_nowait() is True
    runner = ExecInThread(interp, "out.put(lock.acquire(timeout=30)); lock.release()")
    lock.release()
    runner.join()
    assert out.get(timeout=30) is True
    assert not lock.locked()


# --------------------------------------------------------------------------
# RLock
# --------------------------------------------------------------------------


def test_rlock_reentrant() -> None:
    r = RLock()
    assert r.acquire() and r.acquire() and r.acquire(False)
    assert r._is_owned() and r.locked()
    assert "count=3" in repr(r)
    r.release()
    r.release()
    assert r.locked()
    r.release()
    assert not r.locked() and not r._is_owned()
    with pytest.raises(RuntimeError):
        r.release()
    with r:
        with r:
            assert r.locked()
    assert not r.locked()


def test_rlock_release_by_non_owner_thread() -> None:
    r = RLock()
    r.acquire()
    t, out = _in_thread(lambda: _raises(RuntimeError, r.release))
    t.join(30)
    assert out == [True]
    t, out = _in_thread(r.acquire, False)
    t.join(30)
    assert out == [False]
    r.release()


def _raises(exc_type, fn, *args) -> bool:  # type: ignore[no-untyped-def]
    try:
        fn(*args)
    except exc_type:
        return True
    return False


def test_rlock_owner_is_the_thread_in_any_interpreter(interps) -> None:  # type: ignore[no-untyped-def]
    (interp,) = interps(1)
    r, out = RLock(), Queue()
    interp.prepare_main(r=r, out=out)
    r.acquire()
    # the same OS thread inside another interpreter still owns it: it
    # re-enters instead of deadlocking on itself
    interp.exec("out.put(r.acquire(False)); out.put(r._is_owned()); r.release()")
    assert out.get_nowait() is True
    assert out.get_nowait() is True
    assert r._is_owned()
    r.release()
    assert not r.locked()
    # another thread, in another interpreter, is not the owner
    r.acquire()
    t = interp.call_in_thread(exec, "out.put(r.acquire(False))", {"r": r, "out": out})
    t.join(30)
    assert out.get(timeout=10) is False
    r.release()
    assert not r.locked()


# --------------------------------------------------------------------------
# Event
# --------------------------------------------------------------------------


def test_event_basics() -> None:
    e = Event()
    assert not e.is_set()
    assert e.wait(0) is False
    e.set()
    assert e.is_set() and e.wait() is True and e.wait(0) is True
    e.set()
    e.clear()
    assert not e.is_set()
    with pytest.raises(ValueError, match="non-negative"):
        e.wait(-1)


def test_event_wait_timeout_is_exact() -> None:
    e = Event()
    t0 = time.monotonic()
    assert e.wait(timeout=0.5) is False
    _assert_waited(t0, 0.5)


def test_event_set_wakes_all_waiters() -> None:
    e = Event()
    results = []
    lock = threading.Lock()

    def waiter() -> None:
        r = e.wait(30)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=waiter) for _ in range(5)]
    for t in threads:
        t.start()
    e.set()
    for t in threads:
        t.join(30)
    assert results == [True] * 5


def test_event_across_interpreters(interps) -> None:  # type: ignore[no-untyped-def]
    a, b = interps(2)
    go, done = Event(), Event()
    out = Queue()
    for interp in (a, b):
        interp.prepare_main(go=go, done=done, out=out)
    runners = [ExecInThread(i, "out.put(go.wait(30))") for i in (a, b)]
    go.set()
    for r in runners:
        r.join()
    assert [out.get_nowait(), out.get_nowait()] == [True, True]
    a.exec("done.set()")
    assert done.is_set()


def test_ctrl_c_interrupts_event_wait() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are handled in the main thread only")
    e = Event()
    timer = threading.Timer(0.1, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            e.wait()
    finally:
        timer.cancel()


# --------------------------------------------------------------------------
# Semaphore, BoundedSemaphore
# --------------------------------------------------------------------------


def test_semaphore_counts() -> None:
    s = Semaphore(2)
    assert s._value == 2
    assert s.acquire() and s.acquire(blocking=False)
    assert s.acquire(False) is False
    s.release(2)
    assert s._value == 2
    with s:
        assert s._value == 1
    assert s._value == 2
    assert Semaphore()._value == 1 and Semaphore(0)._value == 0


def test_semaphore_argument_errors() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        Semaphore(-1)
    s = Semaphore(0)
    with pytest.raises(ValueError, match="one or more"):
        s.release(0)
    with pytest.raises(ValueError, match="non-blocking"):
        s.acquire(False, 1)
    with pytest.raises(ValueError, match="non-negative"):
        s.acquire(timeout=-1)


def test_semaphore_timeout_is_exact() -> None:
    s = Semaphore(0)
    t0 = time.monotonic()
    assert s.acquire(timeout=0.25) is False
    _assert_waited(t0, 0.25)


def test_semaphore_release_n_wakes_n() -> None:
    s = Semaphore(0)
    out: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        r = s.acquire(timeout=30)
        with lock:
            out.append(r)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    s.release(3)
    for t in threads:
        t.join(30)
    assert out == [True, True, True]
    assert s._value == 0


def test_bounded_semaphore() -> None:
    b = BoundedSemaphore(2)
    assert isinstance(b, Semaphore)
    with pytest.raises(ValueError, match="too many"):
        b.release()
    b.acquire()
    b.acquire()
    with pytest.raises(ValueError, match="too many"):
        b.release(3)
    b.release(2)
    assert b._value == 2
    assert "BoundedSemaphore" in repr(b)


def test_semaphore_limits_concurrency_across_interpreters(interps) -> None:  # type: ignore[no-untyped-def]
    workers = interps(3)
    sem = BoundedSemaphore(1)
    inside, peak = Semaphore(0), Queue()
    for interp in workers:
        interp.prepare_main(sem=sem, inside=inside, peak=peak)
    src = (
        "for _ in range(300):\n"
        "    with sem:\n"
        "        inside.release()\n"
        "        peak.put(inside._value)\n"
        "        inside.acquire()\n"
    )
    runners = [ExecInThread(i, src) for i in workers]
    for r in runners:
        r.join(120)
    values = []
    while True:
        try:
            values.append(peak.get_nowait())
        except QueueEmpty:
            break
    assert len(values) == 900 and max(values) == 1


# --------------------------------------------------------------------------
# Condition
# --------------------------------------------------------------------------


def test_condition_requires_lock_ownership() -> None:
    c = Condition()
    with pytest.raises(RuntimeError, match="un-acquired"):
        c.wait(0)
    with pytest.raises(RuntimeError, match="un-acquired"):
        c.notify()
    with pytest.raises(RuntimeError, match="un-acquired"):
        c.notify_all()
    with pytest.raises(TypeError):
        Condition(threading.Lock())
    assert isinstance(c.lock, RLock)
    lock = Lock()
    assert Condition(lock).lock == lock


@pytest.mark.parametrize("lock_factory", [Lock, RLock])
def test_condition_wait_timeout(lock_factory) -> None:  # type: ignore[no-untyped-def]
    c = Condition(lock_factory())
    with c:
        t0 = time.monotonic()
        assert c.wait(0.25) is False
        _assert_waited(t0, 0.25)
        assert c.lock.locked()
    assert not c.lock.locked()


@pytest.mark.parametrize("lock_factory", [Lock, RLock])
def test_condition_producer_consumer(lock_factory) -> None:  # type: ignore[no-untyped-def]
    c = Condition(lock_factory())
    items: list[int] = []
    got: list[int] = []

    def consumer() -> None:
        for _ in range(100):
            with c:
                assert c.wait_for(lambda: items, timeout=30)
                got.append(items.pop(0))

    t = threading.Thread(target=consumer)
    t.start()
    for i in range(100):
        with c:
            items.append(i)
            c.notify()
    t.join(30)
    assert got == list(range(100))


def test_condition_rlock_levels_restored() -> None:
    c = Condition(RLock())
    with c:
        with c:
            assert "count=2" in repr(c.lock)
            assert c.wait(0) is False
            assert "count=2" in repr(c.lock)


def test_condition_notify_all_and_n() -> None:
    c = Condition()
    ready = Semaphore(0)
    woken = Semaphore(0)

    def waiter() -> None:
        with c:
            ready.release()
            c.wait(30)
            woken.release()

    threads = [threading.Thread(target=waiter) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in threads:
        assert ready.acquire(timeout=30)
    # every waiter released `ready` while holding the lock, right before
    # wait() queued it; holding the lock now means all four are queued.
    with c:
        c.notify(1)
    assert woken.acquire(timeout=30)
    assert woken.acquire(timeout=0.1) is False  # only one was notified
    with c:
        c.notify_all()
    for _ in range(3):
        assert woken.acquire(timeout=30)
    for t in threads:
        t.join(30)


def test_condition_wait_for_timeout() -> None:
    c = Condition()
    with c:
        t0 = time.monotonic()
        assert c.wait_for(lambda: False, timeout=0.25) is False
        _assert_waited(t0, 0.25)


def test_condition_across_interpreters(interps) -> None:  # type: ignore[no-untyped-def]
    (interp,) = interps(1)
    c, box, ready = Condition(Lock()), Queue(), Semaphore(0)
    interp.prepare_main(c=c, box=box, ready=ready)
    runner = ExecInThread(
        interp,
        "with c:\n"
        "    ready.release()\n"
        "    ok = c.wait(30)\n"
        "    box.put(('woken', ok, c.lock.locked()))\n",
    )
    assert ready.acquire(timeout=30)
    with c:  # the waiter is queued once we get the lock
        c.notify()
    runner.join()
    assert box.get(timeout=30) == ("woken", True, True)
    assert not c.lock.locked()


def test_ctrl_c_interrupts_condition_wait_and_keeps_the_lock() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are handled in the main thread only")
    c = Condition(RLock())
    timer = threading.Timer(0.1, _thread.interrupt_main)
    with c, c:
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                c.wait()
        finally:
            timer.cancel()
        # re-acquired with both levels before the exception propagated
        assert c.lock._is_owned() and "count=2" in repr(c.lock)
    assert not c.lock.locked()
