"""InterpreterPoolExecutor: what the standard library's executors promise.

In the spirit of CPython's Lib/test/test_concurrent_futures (written anew):
submitting, future states and callbacks, wait() and as_completed(), map,
shutdown, initializers and broken pools.  Synchronisation with the tasks goes
through multigil.Event, which every interpreter shares: no sleeps.
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import itertools
import logging
import os
import subprocess
import sys
import textwrap
import threading
import weakref

import pytest

import executor_tasks as tasks
import multigil
from multigil import Event, InterpreterPoolExecutor
from multigil.executor import BrokenInterpreterPool, InterpreterFuture

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 60  # generous bound for results that should come at once


@pytest.fixture(scope="module")
def pool():
    with InterpreterPoolExecutor(2) as p:
        yield p


def run_script(source: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(source)], capture_output=True,
                          text=True, timeout=timeout, env=env)


# ------------------------------------------------------------- the class --

def test_is_a_concurrent_futures_executor():
    assert issubclass(InterpreterPoolExecutor, cf.Executor)
    assert "ThreadPoolExecutor" not in InterpreterPoolExecutor.__name__
    assert issubclass(BrokenInterpreterPool, cf.BrokenExecutor)
    assert multigil.InterpreterPoolExecutor is InterpreterPoolExecutor


def test_default_max_workers():
    expected = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    with InterpreterPoolExecutor() as p:
        assert p.max_workers == expected
        assert p._max_workers == expected


@pytest.mark.parametrize("bad", [0, -1])
def test_max_workers_must_be_positive(bad):
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        InterpreterPoolExecutor(bad)


def test_bad_arguments():
    with pytest.raises(TypeError):
        InterpreterPoolExecutor("2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="initializer"):
        InterpreterPoolExecutor(1, initializer=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_tasks_per_worker"):
        InterpreterPoolExecutor(1, max_tasks_per_worker=0)
    with pytest.raises(SyntaxError):
        InterpreterPoolExecutor(1, initializer="def (:")


def test_repr():
    p = InterpreterPoolExecutor(1, thread_name_prefix="reprpool")
    assert "reprpool" in repr(p) and "running" in repr(p)
    p.shutdown()
    assert "shut down" in repr(p)


# ------------------------------------------------------------ submitting --

def test_submit(pool):
    fut = pool.submit(pow, 2, 8)
    assert isinstance(fut, cf.Future) and isinstance(fut, InterpreterFuture)
    assert fut.result(TIMEOUT) == 256


def test_submit_keywords(pool):
    assert pool.submit(tasks.kw, 1, b=2, c=3).result(TIMEOUT) == (1, 2, 3)
    # fn is positional-only: keywords named fn or self reach the function
    assert pool.submit(dict, fn=1, self=2).result(TIMEOUT) == {"fn": 1, "self": 2}


def test_submit_lambda_closure_and_main_function(pool):
    k = 10
    assert pool.submit(lambda x: x + k, 5).result(TIMEOUT) == 15

    def inner(x):
        return [x] * 2

    assert pool.submit(inner, "a").result(TIMEOUT) == ["a", "a"]
    # a function of __main__, in a script: sent by value, the script not re-run
    proc = run_script("""
        from multigil import InterpreterPoolExecutor
        print("script ran")
        def triple(x):
            return 3 * x
        if __name__ == "__main__":
            with InterpreterPoolExecutor(1) as p:
                print(p.submit(triple, 14).result())
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["script", "ran", "42"]


def test_tasks_run_in_other_interpreters(pool):
    ids = {pool.submit(tasks.interp_id).result(TIMEOUT) for _ in range(20)}
    assert multigil.interpreters.get_main().id not in ids
    assert 1 <= len(ids) <= 2
    pid, _ = pool.submit(tasks.pid_and_interp).result(TIMEOUT)
    assert pid == os.getpid()


def test_many_futures(pool):
    futs = [pool.submit(tasks.square, i) for i in range(500)]
    assert [f.result(TIMEOUT) for f in futs] == [i * i for i in range(500)]
    assert pool._pool.pending == {}


def test_not_callable_fails_the_future(pool):
    fut = pool.submit(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fut.result(TIMEOUT)
    assert pool.submit(abs, -1).result(TIMEOUT) == 1


def test_submit_does_not_keep_arguments_alive(pool):
    class Big:
        pass

    obj = Big()
    ref = weakref.ref(obj)
    fut = pool.submit(tasks.identity, obj)
    del obj
    assert isinstance(fut.result(TIMEOUT), Big)
    del fut
    gc.collect()
    assert ref() is None


# --------------------------------------------------------- future states --

def test_future_states_and_cancel(pool):
    started, release = Event(), Event()
    blockers = [pool.submit(tasks.wait_event, started if i == 0 else None, release, i)
                for i in range(2)]
    assert started.wait(TIMEOUT)
    queued = pool.submit(tasks.square, 7)
    assert not queued.running() and not queued.done()
    assert blockers[0].running()
    assert blockers[0].cancel() is False          # running: as in the stdlib
    assert queued.cancel() is True
    assert queued.cancel() is True                # again: still True
    assert queued.cancelled() and queued.done()
    with pytest.raises(cf.CancelledError):
        queued.result(0)
    with pytest.raises(cf.CancelledError):
        queued.exception(0)
    release.set()
    assert [b.result(TIMEOUT) for b in blockers] == [0, 1]
    assert blockers[0].cancel() is False          # finished
    assert not blockers[0].cancelled()
    assert pool.submit(tasks.square, 3).result(TIMEOUT) == 9


def test_result_and_exception_timeouts(pool):
    started, release = Event(), Event()
    fut = pool.submit(tasks.wait_event, started, release, "v")
    assert started.wait(TIMEOUT)
    with pytest.raises(TimeoutError):
        fut.result(timeout=0.01)
    with pytest.raises(TimeoutError):
        fut.exception(timeout=0.01)
    release.set()
    assert fut.result(TIMEOUT) == "v"
    assert fut.exception() is None


def test_done_callbacks(pool):
    seen = []
    done = threading.Event()

    def cb(f):
        seen.append(("cb", f.result()))
        done.set()

    fut = pool.submit(tasks.square, 4)
    fut.add_done_callback(cb)
    assert done.wait(TIMEOUT)
    assert seen == [("cb", 16)]
    # added after completion: called at once, in this thread
    me = []
    fut.add_done_callback(lambda f: me.append(threading.current_thread()))
    assert me == [threading.current_thread()]


def test_done_callback_with_exception_and_cancel(pool):
    got = []
    f1 = pool.submit(tasks.fail_on, 1, 1)
    f1.add_done_callback(lambda f: got.append(type(f.exception())))
    f1.exception(TIMEOUT)
    started, release = Event(), Event()
    blockers = [pool.submit(tasks.wait_event, started if i == 0 else None, release) for i in range(2)]
    assert started.wait(TIMEOUT)
    f2 = pool.submit(tasks.noop)
    f2.add_done_callback(lambda f: got.append(f.cancelled()))
    assert f2.cancel()
    release.set()
    for b in blockers:
        b.result(TIMEOUT)
    assert got == [ValueError, True]


def test_raising_callback_is_logged_not_fatal(pool, caplog):
    done = threading.Event()

    def bad(f):
        raise RuntimeError("callback failed")

    fut = pool.submit(tasks.square, 5)
    fut.add_done_callback(bad)
    fut.add_done_callback(lambda f: done.set())
    assert done.wait(TIMEOUT)
    assert fut.result() == 25
    assert pool.submit(tasks.square, 6).result(TIMEOUT) == 36


# ------------------------------------------------- wait and as_completed --

def _blocked(pool, n=2):
    """Occupy every worker; returns (release event, their futures)."""
    started = [Event() for _ in range(n)]
    release = Event()
    futs = [pool.submit(tasks.wait_event, started[i], release, i) for i in range(n)]
    for s in started:
        assert s.wait(TIMEOUT)
    return release, futs


def test_wait_first_completed(pool):
    release, futs = _blocked(pool)
    finished = cf.Future()
    finished.set_result(1)
    done, not_done = cf.wait(futs + [finished], return_when=cf.FIRST_COMPLETED, timeout=TIMEOUT)
    assert done == {finished} and not_done == set(futs)
    release.set()
    done, not_done = cf.wait(futs, return_when=cf.ALL_COMPLETED, timeout=TIMEOUT)
    assert done == set(futs) and not not_done


def test_wait_first_exception(pool):
    release, futs = _blocked(pool)
    bad = pool.submit(tasks.fail_on, 0, 0)
    release.set()
    done, _ = cf.wait(futs + [bad], return_when=cf.FIRST_EXCEPTION, timeout=TIMEOUT)
    assert bad in done
    cf.wait(futs, timeout=TIMEOUT)


def test_wait_timeout(pool):
    release, futs = _blocked(pool)
    done, not_done = cf.wait(futs, timeout=0.05)
    assert not done and not_done == set(futs)
    release.set()
    assert cf.wait(futs, timeout=TIMEOUT).not_done == set()


def test_wait_sees_a_cancelled_queued_future_at_once(pool):
    release, futs = _blocked(pool)
    queued = pool.submit(tasks.noop)
    waiter = threading.Thread(target=lambda: results.append(cf.wait([queued], timeout=TIMEOUT)))
    results: list = []
    waiter.start()
    queued.cancel()
    waiter.join(TIMEOUT)
    assert results and results[0].done == {queued}
    release.set()
    cf.wait(futs, timeout=TIMEOUT)


def test_as_completed(pool):
    futs = [pool.submit(tasks.square, i) for i in range(50)]
    assert sorted(f.result() for f in cf.as_completed(futs, timeout=TIMEOUT)) == \
        sorted(i * i for i in range(50))
    # duplicates are yielded once
    assert len(list(cf.as_completed(futs + futs, timeout=TIMEOUT))) == 50


def test_as_completed_timeout(pool):
    release, futs = _blocked(pool)
    ready = pool.submit(tasks.square, 2)  # queued behind the blockers
    with pytest.raises(TimeoutError, match=r"3 \(of 3\) futures unfinished"):
        for _ in cf.as_completed(futs + [ready], timeout=0.05):
            pass
    release.set()
    assert ready.result(TIMEOUT) == 4


def test_as_completed_with_cancel_and_interrupt(pool):
    started = Event()
    spinning = pool.submit(tasks.spin_forever, started)
    assert started.wait(TIMEOUT)
    normal = pool.submit(tasks.square, 3)
    assert spinning.cancel(interrupt=True)
    got = list(cf.as_completed([spinning, normal], timeout=TIMEOUT))
    assert set(got) == {spinning, normal}
    assert spinning.cancelled()


# ------------------------------------------------------------------- map --

def test_map(pool):
    assert list(pool.map(pow, range(10), range(10))) == list(map(pow, range(10), range(10)))
    assert list(pool.map(tasks.square, [])) == []
    # shortest iterable wins, as with zip
    assert list(pool.map(tasks.add, [1, 2, 3], [10, 20])) == [11, 22]
    # generators and other unsized iterables
    assert list(pool.map(tasks.square, (i for i in range(7)))) == [i * i for i in range(7)]
    assert list(pool.map(tasks.add, iter(range(5)), range(5))) == [0, 2, 4, 6, 8]


def test_map_exception(pool):
    it = pool.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])
    assert next(it) == (0, 1)
    assert next(it) == (0, 1)
    with pytest.raises(ZeroDivisionError):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


@pytest.mark.parametrize("chunksize", [1, 3, None])
def test_map_exception_keeps_order(pool, chunksize):
    it = pool.map(tasks.fail_on, range(20), itertools.repeat(13), chunksize=chunksize)
    assert [next(it) for _ in range(13)] == list(range(13))
    with pytest.raises(ValueError, match="bad item 13"):
        next(it)


def test_map_submits_at_once(pool):
    """The inputs are collected and submitted when map is called, not lazily."""
    started = Event()
    it = pool.map(tasks.wait_event, [started], [started], ["ran"])
    assert started.wait(TIMEOUT)     # ran without anyone iterating
    assert list(it) == ["ran"]


def test_map_timeout(pool):
    release = Event()
    it = pool.map(tasks.wait_event, [None, None], [release, release], [1, 2], timeout=0.1,
                  chunksize=1)
    with pytest.raises(TimeoutError):
        list(it)
    release.set()


def test_map_bad_arguments(pool):
    with pytest.raises(ValueError):
        pool.map(tasks.square, range(3), chunksize=0)
    with pytest.raises(TypeError):
        pool.map(tasks.square, range(3), buffersize=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        pool.map(tasks.square, range(3), buffersize=0)


def test_map_buffersize_reads_lazily(pool):
    consumed = []

    def source():
        for i in itertools.count():
            consumed.append(i)
            yield i

    it = pool.map(tasks.square, source(), buffersize=4)
    assert [next(it) for _ in range(10)] == [i * i for i in range(10)]
    assert len(consumed) <= 10 + 4 + 1
    it.close()


def test_map_buffersize_infinite_input_tiny_tasks(pool):
    it = pool.map(abs, itertools.count(), buffersize=10_000)
    total = sum(itertools.islice(it, 50_000))
    assert total == sum(range(50_000))
    it.close()


def test_map_closing_early_cancels_the_rest(pool):
    release = Event()
    started = Event()
    it = pool.map(tasks.wait_event, [started] + [None] * 5, [started] + [release] * 5, range(6),
                  chunksize=1)
    futs = _live_chunks(it)
    assert next(it) == 0
    it.close()
    assert sum(f.cancelled() for f in futs) >= 3   # two may be running
    release.set()
    assert pool.submit(tasks.square, 2).result(TIMEOUT) == 4


def _live_chunks(it):
    run = it.gi_frame.f_locals["run"]
    return list(run.live)


# -------------------------------------------------------------- shutdown --

def test_submit_after_shutdown():
    p = InterpreterPoolExecutor(1)
    p.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        p.submit(tasks.noop)
    with pytest.raises(RuntimeError):
        p.map(tasks.square, [1])
    p.shutdown()  # twice is fine


def test_context_manager_waits_for_work():
    started = Event()
    with InterpreterPoolExecutor(2) as p:
        futs = [p.submit(tasks.spin_then_return, started, 0.05) for _ in range(4)]
        threads = [s.thread for s in p._pool.slots]
    assert all(f.done() for f in futs)
    assert [f.result() for f in futs] == ["finished"] * 4
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive()


def test_shutdown_without_wait_finishes_work():
    release = Event()
    p = InterpreterPoolExecutor(2)
    futs = [p.submit(tasks.wait_event, None, release, i) for i in range(5)]
    p.shutdown(wait=False)
    release.set()
    assert [f.result(TIMEOUT) for f in futs] == list(range(5))
    p._pool.join()


def test_shutdown_cancel_futures():
    p = InterpreterPoolExecutor(1)
    started, release = Event(), Event()
    running = p.submit(tasks.wait_event, started, release, "done")
    assert started.wait(TIMEOUT)
    queued = [p.submit(tasks.square, i) for i in range(5)]
    waiter = threading.Thread(target=p.shutdown, kwargs={"cancel_futures": True})
    waiter.start()
    cf.wait(queued, timeout=TIMEOUT)
    assert all(f.cancelled() for f in queued)
    assert not running.done()
    release.set()
    waiter.join(TIMEOUT)
    assert running.result() == "done"


def test_shutdown_interrupt_stops_running_tasks():
    p = InterpreterPoolExecutor(2)
    started = [Event(), Event()]
    spinning = [p.submit(tasks.spin_forever, s) for s in started]
    queued = p.submit(tasks.square, 2)
    for s in started:
        assert s.wait(TIMEOUT)
    p.shutdown(wait=True, interrupt=True)
    assert all(f.cancelled() for f in spinning)
    assert queued.cancelled()
    assert all(s.ended.is_set() for s in p._pool.slots)


def test_shutdown_from_a_done_callback_does_not_deadlock():
    p = InterpreterPoolExecutor(1)
    done = threading.Event()

    def cb(f):
        p.shutdown(wait=True)   # runs in the worker's thread: must not join itself
        done.set()

    p.submit(tasks.noop).add_done_callback(cb)
    assert done.wait(TIMEOUT)
    p._pool.join()


def test_garbage_collected_executor_frees_its_workers():
    p = InterpreterPoolExecutor(2)
    assert p.submit(tasks.square, 3).result(TIMEOUT) == 9
    threads = [s.thread for s in p._pool.slots]
    del p
    gc.collect()
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive()


def test_workers_start_as_tasks_need_them_and_stay():
    """As ThreadPoolExecutor: a task starts a worker unless one is idle, up to
    max_workers; a task submitted after the last one finished reuses it."""
    with InterpreterPoolExecutor(3) as p:
        assert p._threads == set()      # nothing until the first task
        ids = {p.submit(tasks.interp_id).result(TIMEOUT) for _ in range(20)}
        assert len(p._threads) == 1 and len(ids) == 1
        release = Event()
        started = [Event() for _ in range(5)]
        futs = [p.submit(tasks.wait_event, s, release, i) for i, s in enumerate(started)]
        assert all(s.wait(TIMEOUT) for s in started[:3])
        assert len(p._threads) == 3      # never more than max_workers
        release.set()
        assert [f.result(TIMEOUT) for f in futs] == list(range(5))
        ids |= {p.submit(tasks.interp_id).result(TIMEOUT) for _ in range(20)}
        assert len(ids) <= 3            # the same interpreters, kept warm


def test_start_all_starts_every_worker():
    with InterpreterPoolExecutor(2) as p:
        p._pool.start_all()
        assert len(p._threads) == 2


def test_submit_during_interpreter_shutdown():
    proc = run_script("""
        import atexit, threading
        from multigil import InterpreterPoolExecutor
        pool = InterpreterPoolExecutor(1)
        pool.submit(abs, 1).result()
        def late():
            try:
                pool.submit(abs, 2)
            except RuntimeError as e:
                print("refused:", e)
        atexit.register(late)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "cannot schedule new futures after" in proc.stdout


@pytest.mark.parametrize("ending", ["pool.shutdown(wait=False)", "pass  # no shutdown"])
def test_exit_finishes_submitted_work(ending):
    """As with the stdlib: the program does not exit before queued work is
    done, whether the pool was shut down without waiting or not at all."""
    proc = run_script(f"""
        from multigil import InterpreterPoolExecutor
        import executor_tasks as tasks
        pool = InterpreterPoolExecutor(1)
        futs = [pool.submit(tasks.square, i) for i in range(100)]
        futs[-1].add_done_callback(lambda f: print("last", f.result(), flush=True))
        {ending}
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "last 9801"
    assert proc.stderr == ""


# ------------------------------------------------------------ initializer --

def test_initializer_runs_in_each_worker():
    with InterpreterPoolExecutor(2, initializer=tasks.init, initargs=("hello",)) as p:
        assert {p.submit(tasks.get_marker).result(TIMEOUT) for _ in range(10)} == {"hello"}
        assert tasks.marker is None   # not in the main interpreter


def test_initializer_script_and_shared():
    with InterpreterPoolExecutor(1, initializer="import sys\nanswer = greeting + '!'",
                                 shared={"greeting": "hi"}) as p:
        assert p.submit(tasks.main_value, "answer").result(TIMEOUT) == "hi!"
        assert p.submit(tasks.main_value, "greeting").result(TIMEOUT) == "hi"


def test_initializer_failure_breaks_the_pool(caplog):
    caplog.set_level(logging.CRITICAL, logger="concurrent.futures")
    p = InterpreterPoolExecutor(2, initializer=tasks.init_fail, initargs=("no way",))
    futs = [p.submit(tasks.square, i) for i in range(5)]
    for f in futs:
        with pytest.raises(BrokenInterpreterPool) as info:
            f.result(TIMEOUT)
        assert "initializer failed" in str(info.value)
        assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(BrokenInterpreterPool):
        p.submit(tasks.square, 1)
    assert "Exception in initializer" in caplog.text
    assert "broken" in repr(p)
    p.shutdown()


def test_max_tasks_per_worker_recycles_interpreters():
    with InterpreterPoolExecutor(1, max_tasks_per_worker=3, initializer=tasks.init,
                                 initargs=("again",)) as p:
        seen = [p.submit(tasks.count_call).result(TIMEOUT) for _ in range(9)]
        assert seen == [1, 2, 3] * 3
        ids = [p.submit(tasks.interp_id).result(TIMEOUT) for _ in range(6)]
        # 3.12 and 3.13 reset the interpreter instead (test_executor_recycle.py)
        assert len(set(ids)) == (1 if sys.version_info < (3, 14) else 2)
        # the initializer ran in each new interpreter
        assert p.submit(tasks.get_marker).result(TIMEOUT) == "again"


def test_thread_names():
    with InterpreterPoolExecutor(2, thread_name_prefix="crunch") as p:
        p._pool.start_all()
        names = sorted(t.name for t in p._threads)
        assert p._thread_name_prefix == "crunch"
    assert names == ["crunch_0", "crunch_1"]
    with InterpreterPoolExecutor(1) as p:
        assert p._thread_name_prefix.startswith("InterpreterPoolExecutor-")


def test_worker_threads_are_not_daemons():
    with InterpreterPoolExecutor(1) as p:
        p.submit(tasks.noop).result(TIMEOUT)
        assert not p._pool.slots[0].thread.daemon


# ------------------------------------------ what code written for the stdlib reads --

def test_it_is_a_thread_pool_executor_as_the_stdlibs():
    assert issubclass(InterpreterPoolExecutor, cf.ThreadPoolExecutor)
    assert issubclass(BrokenInterpreterPool, cf.thread.BrokenThreadPool)
    assert InterpreterPoolExecutor.BROKEN is BrokenInterpreterPool
    with InterpreterPoolExecutor(3) as p:
        assert p._max_workers == 3 and p._broken is False and p._shutdown is False
    assert p._shutdown is True


def test_saturation_starts_max_workers_threads():
    blocker = multigil.Queue()
    p = InterpreterPoolExecutor(4)
    futs = [p.submit(tasks.get, blocker) for _ in range(15 * p._max_workers)]
    assert len(p._threads) == p._max_workers
    for _ in futs:
        blocker.put_nowait(None)
    p.shutdown(wait=True)
    for t in p._threads:
        t.join(TIMEOUT)
        assert not t.is_alive()


def test_broken_attribute_says_why(caplog):
    caplog.set_level(logging.CRITICAL, logger="concurrent.futures")
    p = InterpreterPoolExecutor(1, initializer=tasks.init_fail, initargs=("no",))
    with pytest.raises(BrokenInterpreterPool):
        p.submit(tasks.noop).result(TIMEOUT)
    assert isinstance(p._broken, str) and "initializer failed" in p._broken
    with pytest.raises(cf.BrokenExecutor):
        p.submit(tasks.noop)
    p.shutdown()


def test_asyncio_takes_the_pool_as_default_executor():
    import asyncio

    async def main(pool):
        loop = asyncio.get_running_loop()
        loop.set_default_executor(pool)
        here = multigil.interpreters.get_current().id
        there = await loop.run_in_executor(None, tasks.interp_id)
        assert there != here
        return await loop.run_in_executor(None, pow, 2, 10)

    pool = InterpreterPoolExecutor(1)
    assert asyncio.run(main(pool)) == 1024
    assert pool._shutdown    # closing the loop shut its default executor down


@pytest.mark.parametrize("exc_type", [tasks.FalseyBoolError, tasks.FalseyLenError])
def test_an_exception_that_is_false_still_raises(pool, exc_type):
    """gh-132063, fixed in 3.14: Future.result() dropped such exceptions."""
    with pytest.raises(exc_type, match="falsey"):
        pool.submit(tasks.raise_, exc_type, "falsey").result(TIMEOUT)
    with pytest.raises(exc_type, match="falsey"):
        list(pool.map(tasks.raise_, [exc_type], ["falsey"]))


def test_map_buffersize_checks_its_argument(pool):
    for bad in ("foo", 2.0):
        with pytest.raises(TypeError, match="buffersize must be an integer or None"):
            pool.map(str, range(4), buffersize=bad)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="buffersize must be None or > 0"):
            pool.map(str, range(4), buffersize=bad)


def test_map_buffersize_as_in_3_14(pool):
    for buffersize in (1, 2, 4, 8):
        assert list(pool.map(str, range(4), buffersize=buffersize)) == ["0", "1", "2", "3"]
        assert list(pool.map(tasks.add, range(4), range(4), buffersize=buffersize)) == [0, 2, 4, 6]
    endless = pool.map(str, itertools.count(), buffersize=2)
    assert [next(endless) for _ in range(3)] == ["0", "1", "2"]
    endless.close()
    both = pool.map(tasks.add, itertools.count(), itertools.count(), buffersize=2)
    assert [next(both) for _ in range(3)] == [0, 2, 4]
    both.close()
    assert next(pool.map(str, [], buffersize=2), None) is None
    assert next(pool.map(str, buffersize=2), None) is None    # no iterables at all
    assert list(pool.map(str)) == []


def test_map_buffersize_reads_no_more_than_the_buffer():
    ints = iter(range(4))
    p = InterpreterPoolExecutor(2)
    p.map(str, ints, buffersize=2)
    p.shutdown(wait=True)
    assert next(ints) == 2


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("chunksize", [1, 4])
def test_map_keeps_no_reference_to_a_result_it_yielded(pool, ordered, chunksize):
    """As the stdlib's (bpo-14406): once yielded, a result is the caller's alone."""
    for obj in pool.map(tasks.box, range(8), chunksize=chunksize, ordered=ordered):
        ref = weakref.ref(obj)
        del obj
        gc.collect()
        assert ref() is None


def test_amap_keeps_no_reference_to_a_result_it_yielded(pool):
    import asyncio

    async def main():
        async for obj in pool.amap(tasks.box, range(8), chunksize=4):
            ref = weakref.ref(obj)
            del obj
            gc.collect()
            assert ref() is None

    asyncio.run(main())


def test_shutdown_cancel_futures_runs_the_tasks_that_started_workers():
    """A task that starts a worker is RUNNING at once (a thread pool's new
    thread takes its task at once; an interpreter takes longer to start): so
    shutdown(cancel_futures=True) right after a burst runs those, and cancels
    the rest."""
    p = InterpreterPoolExecutor(3)
    futs = [p.submit(tasks.square, i) for i in range(30)]
    assert [f.running() or f.done() for f in futs[:3]] == [True] * 3
    p.shutdown(cancel_futures=True)
    assert [f.result(TIMEOUT) for f in futs[:3]] == [0, 1, 4]
    assert all(f.cancelled() or f.result(TIMEOUT) == i * i for i, f in enumerate(futs))
    assert sum(f.cancelled() for f in futs) >= 20


# --------------------------------- differences from the stdlib, by design --
# (docs/executor.md, "Differences from the standard library")

def test_by_design_closures_bound_methods_and_local_instances_are_accepted(pool):
    """The stdlib's InterpreterPoolExecutor refuses them (NotShareableError);
    here they travel by value."""
    spam = 41

    def closure():
        return spam + 1

    class Local:
        def __init__(self):
            self.value = "local"

        def method(self):
            return self.value * 2

    assert pool.submit(closure).result(TIMEOUT) == 42
    assert pool.submit(lambda: "lambda").result(TIMEOUT) == "lambda"
    assert pool.submit(Local().method).result(TIMEOUT) == "locallocal"
    assert pool.submit(Local).result(TIMEOUT).value == "local"
    with InterpreterPoolExecutor(1, initializer=lambda: None) as p:
        assert p.submit(closure).result(TIMEOUT) == 42


def test_by_design_main_functions_see_main_and_module_functions_their_module():
    proc = run_script("""
        from multigil import InterpreterPoolExecutor
        import executor_tasks

        def name():
            return __name__

        if __name__ == "__main__":
            with InterpreterPoolExecutor(1) as p:
                print(p.submit(name).result(), p.submit(executor_tasks.module_name).result())
    """)
    assert proc.returncode == 0, proc.stderr
    # the stdlib: "<fake __main__>" for the first
    assert proc.stdout.split() == ["__main__", "executor_tasks"]


# ------------------------------------ CPython 3.14's interpreter pool tests --
# (Lib/test/test_concurrent_futures/test_interpreter_pool.py, written anew)

def test_tasks_that_block_do_not_starve_the_pool():
    """Ten tasks on four workers, each telling it is ready and then waiting:
    release the ready ones, and every task gets its turn."""
    ready, blocker = multigil.Queue(), multigil.Queue()
    with InterpreterPoolExecutor(4) as p:
        futs = [p.submit(tasks.ready_then_block, i, ready, blocker) for i in range(10)]
        seen = []
        while len(seen) < 10:
            seen.append(ready.get(timeout=TIMEOUT))
            blocker.put_nowait(None)
        cf.wait(futs, timeout=TIMEOUT)
    assert sorted(seen) == list(range(10))
    assert all(f.result() is None for f in futs)


def test_initializer_error_is_logged_with_the_remote_traceback(caplog):
    caplog.set_level(logging.CRITICAL, logger="concurrent.futures")
    with InterpreterPoolExecutor(1, initializer=tasks.raise_, initargs=(Exception, "spam")) as p:
        with pytest.raises(BrokenInterpreterPool) as info:
            p.submit(tasks.noop).result(TIMEOUT)
    assert type(info.value.__cause__) is Exception and str(info.value.__cause__) == "spam"
    assert "Exception in initializer" in caplog.text
    assert "ExecutionFailed: Exception: spam" in caplog.text
    assert "Uncaught in the interpreter:" in caplog.text


def test_run_in_executor_cancelled_before_it_runs_calls_nothing_back():
    import asyncio

    loop = asyncio.new_event_loop()
    pool = InterpreterPoolExecutor(1)
    try:
        loop.set_default_executor(pool)
        fut = loop.run_in_executor(None, tasks.square, 3)
        fut.cancel()
        loop.run_until_complete(loop.shutdown_default_executor())
        assert fut.cancelled()
    finally:
        loop.close()
    assert pool._shutdown
