"""InterpreterPoolExecutor: bad input and faults.

A task that raises, an argument or result that cannot cross, SystemExit and
KeyboardInterrupt inside a task, endless loops (cancel, timeout, shutdown,
exit), Ctrl-C in the main thread, and modules that refuse interpreters.
Process exit is tested in subprocesses, each with a timeout.
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest

import executor_tasks as tasks
from multigil import Event, ExecutionFailed, InterpreterPoolExecutor, NotShareableError

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 60
FATAL_MARKERS = ("Fatal Python error", "Aborted", "free():", "Segmentation fault", "core dumped")


@pytest.fixture(scope="module")
def pool():
    with InterpreterPoolExecutor(2) as p:
        yield p


def script_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))


def run_script(source: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(source)], capture_output=True,
                          text=True, timeout=timeout, env=script_env())


def assert_clean_stderr(stderr: str) -> None:
    for marker in FATAL_MARKERS:
        assert marker not in stderr, stderr


# ------------------------------------------------------- tasks that raise --

def test_task_exception_keeps_its_type_and_remote_traceback(pool):
    fut = pool.submit(tasks.fail_on, 5, 5)
    with pytest.raises(ValueError, match="bad item 5") as info:
        fut.result(TIMEOUT)
    cause = info.value.__cause__
    assert isinstance(cause, ExecutionFailed)
    assert cause.excinfo.type.__name__ == "ValueError"
    assert "fail_on" in cause.excinfo.errdisplay     # the remote traceback
    assert "Uncaught in the interpreter" in str(cause)
    # the others are unaffected
    futs = [pool.submit(tasks.square, i) for i in range(10)]
    assert [f.result(TIMEOUT) for f in futs] == [i * i for i in range(10)]


def test_custom_exception_is_rebuilt_with_its_attributes(pool):
    with pytest.raises(tasks.CustomError) as info:
        pool.submit(tasks.raise_custom, 7).result(TIMEOUT)
    assert info.value.code == 7 and info.value.note == "custom"


def test_exception_that_cannot_cross_becomes_execution_failed(pool):
    with pytest.raises(ExecutionFailed) as info:
        pool.submit(tasks.raise_unpicklable).result(TIMEOUT)
    assert info.value.excinfo.type.__name__ == "UnpicklableError"
    assert "holds a lock" in str(info.value)


def test_exception_in_map_is_rebuilt(pool):
    with pytest.raises(tasks.CustomError):
        list(pool.map(tasks.raise_custom, [1, 2, 3]))


REBUILT_EXCEPTIONS = """
    import asyncio
    import json
    import sys
    import threading
    from multigil import ExecutionFailed, InterpreterPoolExecutor

    class ValidationError(Exception):
        # pickle cannot rebuild it: it calls ValidationError(args[0])
        def __init__(self, field, problem):
            super().__init__(f"{field}: {problem}")
            self.field = field

    def validate(age):
        raise ValidationError("age", f"{age} is negative")

    def raise_from_a_module_main_never_imported():
        import only_in_worker
        only_in_worker.fail()

    def raise_local():
        class Local(Exception):
            pass
        raise Local("defined in a function")

    class HoldsALock(Exception):
        def __init__(self, what, why):
            super().__init__(what)
            self.lock = threading.Lock()

    def raise_holding_a_lock():
        raise HoldsALock("x", "y")

    def seen(exc):
        return {"type": type(exc).__qualname__, "args": list(exc.args),
                "field": getattr(exc, "field", None),
                "cause": type(exc.__cause__).__name__,
                "notes": getattr(exc, "__notes__", [])}

    async def amap(pool):
        try:
            async for _ in pool.amap(validate, [-3]):
                pass
        except ValidationError as exc:
            return seen(exc)

    if __name__ == "__main__":
        out = {}
        with InterpreterPoolExecutor(1) as pool:
            try:
                pool.submit(validate, -1).result()
            except ValidationError as exc:
                out["submit"] = seen(exc)
            try:
                list(pool.map(validate, [-2]))
            except ValidationError as exc:
                out["map"] = seen(exc)
            out["amap"] = asyncio.run(amap(pool))
            try:
                pool.submit(raise_from_a_module_main_never_imported).result()
            except Exception as exc:
                out["module"] = seen(exc)
                out["module_imported_here"] = "only_in_worker" in sys.modules
            for name, fn in (("local", raise_local), ("lock", raise_holding_a_lock)):
                try:
                    pool.submit(fn).result()
                except ExecutionFailed as exc:
                    out[name] = seen(exc)
        print(json.dumps(out))
"""


def test_exceptions_pickle_cannot_rebuild_come_as_their_own_class(tmp_path):
    """An exception whose __init__ does not take its args (pickle cannot
    rebuild it) arrives as an instance of its class, with its args and
    attributes, wherever that class imports here; ExecutionFailed, with a note
    that says why, only where it cannot."""
    (tmp_path / "only_in_worker.py").write_text(textwrap.dedent("""\
        class Refused(Exception):
            def __init__(self, code, reason):
                super().__init__(reason)
                self.code = code

        def fail():
            raise Refused(7, "no")
        """))
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(REBUILT_EXCEPTIONS))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=TIMEOUT, env=script_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for way, age in (("submit", -1), ("map", -2), ("amap", -3)):
        assert out[way] == {"type": "ValidationError", "args": [f"age: {age} is negative"],
                            "field": "age", "cause": "ExecutionFailed", "notes": []}, way
    assert out["module"]["type"] == "Refused" and out["module"]["args"] == ["no"]
    assert out["module_imported_here"]
    local, lock = out["local"], out["lock"]
    assert local["type"] == "ExecutionFailed" and local["args"] == ["Local: defined in a function"]
    assert "local to a function: define it at module level" in local["notes"][0]
    assert lock["type"] == "ExecutionFailed"
    assert "its attribute 'lock' cannot be pickled" in lock["notes"][0]
    assert lock["notes"][0].startswith("multigil: the HoldsALock cannot be rebuilt")


# --------------------------------------------- values that cannot cross --

def test_unpicklable_argument_fails_that_future(pool):
    fut = pool.submit(tasks.identity, threading.Lock())
    with pytest.raises(NotShareableError, match="lock"):
        fut.result(TIMEOUT)
    assert pool.submit(tasks.square, 3).result(TIMEOUT) == 9


def test_unpicklable_result_fails_that_future(pool):
    with pytest.raises(NotShareableError, match="lock"):
        pool.submit(threading.Lock).result(TIMEOUT)
    assert pool.submit(tasks.square, 4).result(TIMEOUT) == 16


def test_unpicklable_function_fails_that_future(pool):
    lock = threading.Lock()
    fut = pool.submit(lambda: lock)
    with pytest.raises(NotShareableError, match="lock"):
        fut.result(TIMEOUT)
    assert pool.submit(tasks.square, 5).result(TIMEOUT) == 25


def test_unpicklable_item_in_map_fails_at_its_place(pool):
    items = [1, 2, threading.Lock(), 4]
    it = pool.map(tasks.identity, items)
    assert next(it) == 1 and next(it) == 2
    with pytest.raises(NotShareableError, match="lock"):
        next(it)
    # an unsendable function fails the map at its first item
    lock = threading.Lock()
    it = pool.map(lambda x: lock, range(100))
    with pytest.raises(NotShareableError):
        next(it)


def test_unpicklable_result_in_map(pool):
    def lock_at_2(x):
        import threading
        return threading.Lock() if x == 2 else x

    it = pool.map(lock_at_2, range(4), chunksize=1)
    assert next(it) == 0 and next(it) == 1
    with pytest.raises(NotShareableError, match="lock"):
        next(it)
    # in one chunk, the whole chunk's results cannot cross
    with pytest.raises(NotShareableError, match="lock"):
        list(pool.map(lock_at_2, range(4), chunksize=4))
    assert list(pool.map(tasks.square, range(3))) == [0, 1, 4]


# ---------------------------------------- SystemExit, KeyboardInterrupt --

@pytest.mark.parametrize("fn", [tasks.raise_system_exit, tasks.raise_keyboard_interrupt])
def test_system_exit_in_task_fails_future_and_replaces_worker(fn):
    with InterpreterPoolExecutor(1) as p:
        before = p.submit(tasks.interp_id).result(TIMEOUT)
        assert p.submit(tasks.count_call).result(TIMEOUT) == 1
        fut = p.submit(fn)
        with pytest.raises(ExecutionFailed) as info:
            fut.result(TIMEOUT)
        assert info.value.excinfo.type.__name__ in ("SystemExit", "KeyboardInterrupt")
        after = p.submit(tasks.interp_id).result(TIMEOUT)
        # A fresh interpreter took over: a new one, or (3.12, 3.13) the same one reset.
        assert (after == before) is (sys.version_info < (3, 14))
        assert p.submit(tasks.count_call).result(TIMEOUT) == 1
        assert p.submit(tasks.square, 6).result(TIMEOUT) == 36


def test_system_exit_in_map_chunk():
    with InterpreterPoolExecutor(1) as p:
        with pytest.raises(ExecutionFailed, match="SystemExit"):
            list(p.map(tasks.raise_system_exit, [1, 2, 3]))
        assert list(p.map(tasks.square, range(5))) == [0, 1, 4, 9, 16]


# ----------------------------------------------------------- endless loops --

def test_cancel_interrupt_stops_a_running_task_and_the_worker_survives():
    with InterpreterPoolExecutor(1) as p:
        me = p.submit(tasks.interp_id).result(TIMEOUT)
        started = Event()
        fut = p.submit(tasks.spin_forever, started)
        assert started.wait(TIMEOUT)
        assert fut.running()
        assert fut.cancel() is False             # stdlib meaning: running
        assert fut.cancel(interrupt=True) is True
        assert fut.cancelled() and fut.done()
        with pytest.raises(cf.CancelledError):
            fut.result(0)
        assert p.submit(tasks.interp_id).result(TIMEOUT) == me   # same worker
        assert p.submit(tasks.square, 9).result(TIMEOUT) == 81


def test_cancel_interrupt_right_as_the_task_starts():
    """cancel(interrupt=True) as soon as the future is running, before the task
    itself runs (the worker is still unpickling a by-value function)."""
    with InterpreterPoolExecutor(1) as p:
        for _ in range(3):
            def spin():
                while True:
                    pass

            fut = p.submit(spin)
            while not fut.running():
                pass
            assert fut.cancel(interrupt=True)
            assert p.submit(tasks.square, 2).result(TIMEOUT) == 4


def test_cancel_interrupt_on_queued_and_finished():
    with InterpreterPoolExecutor(1) as p:
        done = p.submit(tasks.square, 2)
        done.result(TIMEOUT)
        assert done.cancel(interrupt=True) is False
        started = Event()
        spinning = p.submit(tasks.spin_forever, started)
        queued = p.submit(tasks.square, 3)
        assert queued.cancel(interrupt=True) is True and queued.cancelled()
        assert started.wait(TIMEOUT)
        spinning.cancel(interrupt=True)


def test_timeout_stops_a_long_task():
    with InterpreterPoolExecutor(1) as p:
        me = p.submit(tasks.interp_id).result(TIMEOUT)
        fut = p.schedule(tasks.spin_forever, timeout=0.2)
        with pytest.raises(TimeoutError, match="timeout"):
            fut.result(TIMEOUT)
        assert not fut.cancelled()
        assert p.submit(tasks.interp_id).result(TIMEOUT) == me
        # a task that is quick enough is not affected
        assert p.schedule(tasks.square, (5,), timeout=30).result(TIMEOUT) == 25
        assert p.schedule(tasks.kw, (1,), {"b": 2}, timeout=30).result(TIMEOUT) == (1, 2, 0)


def test_timeout_counts_from_the_start_of_the_task():
    with InterpreterPoolExecutor(1) as p:
        started = Event()
        blocker = p.submit(tasks.spin_then_return, started, 0.5)
        quick = p.schedule(tasks.square, (3,), timeout=0.2)   # queued 0.5 s: fine
        assert started.wait(TIMEOUT)
        assert blocker.result(TIMEOUT) == "finished"
        assert quick.result(TIMEOUT) == 9


def test_finished_tasks_with_a_timeout_are_freed_before_their_deadline():
    with InterpreterPoolExecutor(1) as p:
        futs = [p.schedule(tasks.square, (i,), timeout=3600) for i in range(300)]
        assert [f.result(TIMEOUT) for f in futs] == [i * i for i in range(300)]
        # Once the one worker runs the next task, it has left every call above.
        assert p.submit(tasks.noop).result(TIMEOUT) is None
        refs = [weakref.ref(f) for f in futs]
        del futs
        gc.collect()
        assert sum(ref() is not None for ref in refs) == 0


def test_watchdog_calls_at_the_deadline_unless_cancelled():
    from multigil._executor import _watchdog

    fired, never, later = threading.Event(), threading.Event(), threading.Event()
    now = time.monotonic()
    _watchdog.watch(now + 0.05, fired.set)
    _watchdog.watch(now + 0.05, never.set).cancel()
    _watchdog.watch(now + 0.1, later.set)
    assert fired.wait(TIMEOUT) and later.wait(TIMEOUT)
    assert not never.is_set()   # its deadline came before later's: it was skipped


def test_watchdog_cancel_drops_the_callback_and_the_entry():
    from multigil._executor import _watchdog

    class Callback:
        def __call__(self) -> None:
            raise AssertionError("cancelled, must not be called")

    callbacks = [Callback() for _ in range(1000)]
    refs = [weakref.ref(c) for c in callbacks]
    handles = [_watchdog.watch(time.monotonic() + 3600, c) for c in callbacks]
    del callbacks
    for handle in handles:
        handle.cancel()
        handle.cancel()   # twice is fine
    assert all(ref() is None for ref in refs)
    # Cancelled entries (these, and those of every finished task) leave the heap.
    assert len(_watchdog._heap) <= 2 * _watchdog._COMPACT_MIN


def test_schedule_bad_timeout(pool):
    with pytest.raises(ValueError):
        pool.schedule(tasks.noop, timeout=-1)
    with pytest.raises(TypeError):
        pool.schedule(tasks.noop, timeout="1")  # type: ignore[arg-type]


def test_shutdown_cancel_futures_and_interrupt_end_an_endless_loop():
    p = InterpreterPoolExecutor(1)
    started = Event()
    fut = p.submit(tasks.spin_forever, started)
    queued = p.submit(tasks.square, 1)
    assert started.wait(TIMEOUT)
    p.shutdown(wait=True, cancel_futures=True, interrupt=True)
    assert fut.cancelled() and queued.cancelled()


def test_exit_after_interrupting_an_endless_loop_does_not_hang():
    proc = run_script("""
        import executor_tasks as tasks
        from multigil import Event, InterpreterPoolExecutor
        pool = InterpreterPoolExecutor(2)
        started = Event()
        fut = pool.submit(tasks.spin_forever, started)
        pool.submit(tasks.spin_forever)
        started.wait()
        pool.shutdown(wait=False, cancel_futures=True, interrupt=True)
        print("cancelled", fut.cancelled())
    """, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "cancelled True"
    assert_clean_stderr(proc.stderr)


def test_exit_after_a_timeout_does_not_hang():
    proc = run_script("""
        import executor_tasks as tasks
        from multigil import InterpreterPoolExecutor
        pool = InterpreterPoolExecutor(1)
        try:
            pool.schedule(tasks.spin_forever, timeout=0.1).result()
        except TimeoutError:
            print("timed out")
    """, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "timed out"
    assert_clean_stderr(proc.stderr)


def test_exit_on_uncaught_keyboard_interrupt_stops_endless_tasks():
    """A program that ends on KeyboardInterrupt does not wait for endless tasks."""
    proc = run_script("""
        import executor_tasks as tasks
        from multigil import Event, InterpreterPoolExecutor
        pool = InterpreterPoolExecutor(2)
        started = Event()
        pool.submit(tasks.spin_forever, started)
        for _ in range(3):
            pool.submit(tasks.spin_forever)
        started.wait()
        raise KeyboardInterrupt
    """, timeout=60)
    assert proc.returncode in (-signal.SIGINT, 130, 1), proc.stderr
    assert "KeyboardInterrupt" in proc.stderr
    assert_clean_stderr(proc.stderr)


def _start_and_interrupt(source: str, *, signals: int = 1) -> tuple[int, str, str]:
    """Run `source`; when it prints 'running', send SIGINT (again on each
    further 'running' line, up to `signals`).  Returns (status, stdout, stderr)."""
    # The test runner may have been started with SIGINT ignored, which the
    # child would inherit: give it Python's usual handler.
    # SIGALRM's default action ends the child even if it deadlocks, and even
    # if this test process is gone by then.
    source = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "signal.alarm(90)\n"
              + textwrap.dedent(source))
    proc = subprocess.Popen([sys.executable, "-c", source], env=script_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # A child that hangs must not outlive the test, even if pytest-timeout
    # ends this process before the finally clause runs.
    watchdog = threading.Timer(60, proc.kill)
    watchdog.daemon = True
    watchdog.start()
    try:
        lines = []
        sent = 0
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "running" in line and sent < signals:
                proc.send_signal(signal.SIGINT)
                sent += 1
        out = "".join(lines)
        err = proc.stderr.read() if proc.stderr else ""
        return proc.wait(timeout=60), out, err
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_during_map_raises_promptly_and_exits_cleanly():
    status, out, err = _start_and_interrupt("""
        import executor_tasks as tasks
        from multigil import InterpreterPoolExecutor
        pool = InterpreterPoolExecutor(2)
        try:
            for r in pool.map(tasks.print_and_spin, ["running", "other", "more"], chunksize=1):
                pass
        except KeyboardInterrupt:
            print("KeyboardInterrupt in map", flush=True)
            raise
    """)
    assert "KeyboardInterrupt in map" in out
    assert status in (-signal.SIGINT, 130, 1), err
    assert "KeyboardInterrupt" in err
    assert_clean_stderr(err)


def test_ctrl_c_while_waiting_for_a_result():
    status, out, err = _start_and_interrupt("""
        import executor_tasks as tasks
        from multigil import InterpreterPoolExecutor
        with InterpreterPoolExecutor(1) as pool:
            pool.submit(tasks.print_and_spin, "running").result()
    """)
    assert status in (-signal.SIGINT, 130, 1), err
    assert "KeyboardInterrupt" in err
    assert_clean_stderr(err)


def test_ctrl_c_at_exit_stops_endless_tasks():
    """Exit waits for submitted work, as in the stdlib; Ctrl-C there stops it."""
    status, out, err = _start_and_interrupt("""
        import executor_tasks as tasks
        from multigil import InterpreterPoolExecutor
        pool = InterpreterPoolExecutor(1)
        pool.submit(tasks.print_and_spin, "running")
    """)
    assert status in (0, -signal.SIGINT, 130), err
    assert_clean_stderr(err)


# ----------------------------------------- modules that refuse interpreters --

@pytest.mark.skipif(importlib.util.find_spec("numpy") is None, reason="numpy not installed")
def test_module_refusing_interpreters_points_at_multigil_check(pool):
    with pytest.raises(ImportError) as info:
        pool.submit(tasks.import_module, "numpy").result(TIMEOUT)
    assert "multigil check" in str(info.value)
    assert "numpy" in str(info.value)
    assert pool.submit(tasks.square, 8).result(TIMEOUT) == 64


# ------------------------------------------------------------------ races --

def test_racing_interrupts_never_hit_the_next_task():
    """cancel(interrupt=True) on tasks that may be starting, running or ending:
    each ends cancelled or with its result, and no interrupt leaks into a
    later task."""
    with InterpreterPoolExecutor(1) as p:
        outcomes = set()
        for i in range(300):
            fut = p.submit(tasks.square, i)
            if i % 3:
                while not fut.running() and not fut.done():
                    pass
            fut.cancel(interrupt=True)
            try:
                assert fut.result(TIMEOUT) == i * i
                outcomes.add("result")
            except cf.CancelledError:
                outcomes.add("cancelled")
        assert [p.submit(tasks.square, i).result(TIMEOUT) for i in range(100)] == \
            [i * i for i in range(100)]
        assert list(p.map(tasks.square, range(1000))) == [i * i for i in range(1000)]
        assert "cancelled" in outcomes


def test_a_late_interrupt_of_a_finished_task_spares_the_next_task_of_its_worker():
    """A cancel(interrupt=True) that saw the task running just before it ended
    reaches the worker after the worker started its next task: that one runs on."""
    with InterpreterPoolExecutor(1) as p:
        first = p.submit(tasks.square, 3)
        assert first.result(TIMEOUT) == 9
        started, release = Event(), Event()
        second = p.submit(tasks.wait_event, started, release, "second")
        assert started.wait(TIMEOUT)
        assert first._stop is not None
        assert first._stop(first) is False      # what the late cancel() calls (white box)
        assert first.cancel(interrupt=True) is False and not first.cancelled()
        release.set()
        assert second.result(TIMEOUT) == "second"


def test_submit_from_many_threads():
    with InterpreterPoolExecutor(2) as p:
        results: dict[int, list] = {}

        def client(k):
            futs = [p.submit(tasks.add, k, i) for i in range(300)]
            results[k] = [f.result(TIMEOUT) for f in futs]

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert results == {k: [k + i for i in range(300)] for k in range(8)}


def test_shutdown_racing_with_submitters():
    p = InterpreterPoolExecutor(2)
    accepted: list = []
    refused = []
    go = threading.Event()

    def client():
        go.wait()
        for i in range(2000):
            try:
                accepted.append(p.submit(tasks.square, i))
            except RuntimeError:
                refused.append(i)
                return

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    go.set()
    p.submit(tasks.noop).result(TIMEOUT)
    p.shutdown(wait=True)
    for t in threads:
        t.join(TIMEOUT)
    # every accepted task ran to completion, as shutdown(wait=True) promises
    assert all(f.done() and not f.cancelled() for f in accepted)
    assert all(isinstance(f.result(), int) for f in accepted)
