"""InterpreterPoolExecutor(fallback="process"): tasks that need a C extension
refusing interpreters (numpy) run in a forkserver process pool instead, with
the same future semantics.

Every test runs a real script in a subprocess (the script is ``__main__``
there, as users run it), with real numpy, and a timeout; each script prints
one JSON line that the test reads.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_executor_script import DESCRIBE, report, run_script, script_env

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(sys.platform == "win32", reason="forkserver and SIGUSR1")]

# What the scripts share: numpy work of three kinds, described like
# test_executor_script's scripts describe failures.
TASKS = DESCRIBE + """
import os
import numpy as np
import numpy_user                    # imports numpy: refuses interpreters
from multigil import InterpreterPoolExecutor, interpreters

def norm(values):                    # a script function that needs numpy
    return float(np.linalg.norm(values))

def pure(n):                         # runs anywhere
    return sum(i * i for i in range(n))

def either(x):                       # numpy arrays and plain numbers
    return float(x.sum()) if hasattr(x, "sum") else x * 2

def where():
    return os.getpid(), interpreters.get_current().id

def spin():                          # never returns unless interrupted
    np.zeros(1)
    while True:
        pass

def append(path, text):
    np.zeros(1)
    with open(path, "a") as f:
        f.write(text + "\\n")
    return text
"""


def test_numpy_task_array_argument_and_pure_task_in_one_pool(tmp_path: Path) -> None:
    proc = run_script(tmp_path, TASKS + """
if __name__ == "__main__":
    out = {}
    with InterpreterPoolExecutor(2, fallback="process") as pool:
        futures = {
            "module": pool.submit(numpy_user.total, [1, 2, 3]),      # its module imports numpy
            "script": pool.submit(norm, [3.0, 4.0]),                 # a __main__ function
            "array": pool.submit(len, np.arange(5)),                 # a numpy array argument
            "kwarray": pool.submit(either, x=np.ones(3)),
            "pure": pool.submit(pure, 10),
        }
        for name, fut in futures.items():
            out[name] = [fut.result(60), fut.ran_in, fut.stage]
        pid, interp = pool.submit(where).result(60)
        out["where"] = [pid == os.getpid(), interp != 0]
        out["fallback"] = pool.fallback
        out["len_of_a_list"] = [pool.submit(len, [1, 2]).result(60)]
        out["stats"] = pool.stats()._asdict()
    print(json.dumps(out))
""")
    out = report(proc)
    assert out["module"] == [6, "process", None]
    assert out["script"] == [5.0, "process", None]
    assert out["array"] == [5, "process", None]
    assert out["kwarray"] == [3.0, "process", None]
    assert out["pure"] == [285, "interpreter", None]
    assert out["where"] == [True, True]          # pure work stays in the interpreters
    assert out["fallback"] == "process"
    assert out["len_of_a_list"] == [2]
    stats = out["stats"]
    assert stats["fallback"] == 4 and stats["retried"] == 4
    assert stats["interpreter"] == 3             # pure, where, len([1, 2])
    assert set(stats["fallback_functions"]) == {
        "numpy_user.total", "__main__.norm", "builtins.len", "__main__.either"}
    assert "Traceback" not in proc.stderr, proc.stderr


def test_fallen_back_tasks_run_in_forkserver_processes(tmp_path: Path) -> None:
    # fork() with interpreters alive crashes the child: the processes come
    # from the forkserver, which the script's process started.
    proc = run_script(tmp_path, TASKS + """
def place():
    np.zeros(1)
    import multiprocessing
    return os.getpid(), os.getppid(), multiprocessing.current_process().name

if __name__ == "__main__":
    with InterpreterPoolExecutor(2, fallback="process") as pool:
        pid, ppid, name = pool.submit(place).result(60)
    print(json.dumps({"other_pid": pid != os.getpid(), "forkserver_child": ppid != os.getpid(),
                      "name": name}))
""")
    out = report(proc)
    assert out["other_pid"] and out["forkserver_child"]
    assert "Fatal Python error" not in proc.stderr


def test_decision_is_cached_and_logged_once(tmp_path: Path) -> None:
    proc = run_script(tmp_path, TASKS + """
import logging
logging.basicConfig(level=logging.INFO, format="LOG %(name)s %(message)s")

if __name__ == "__main__":
    out = {}
    with InterpreterPoolExecutor(2, fallback="process") as pool:
        pool.submit(norm, [1.0]).result(60)
        out["first"] = pool.stats()._asdict()
        for i in range(5):
            pool.submit(norm, [float(i)]).result(60)
        out["later"] = pool.stats()._asdict()
        # a map of the same function: every chunk goes straight there too
        out["map"] = list(pool.map(norm, [[3.0, 4.0]] * 20))
        out["after_map"] = pool.stats()._asdict()
    print(json.dumps(out))
""")
    out = report(proc)
    assert out["first"]["retried"] == 1 and out["first"]["fallback"] == 1
    # the later tasks were not tried in an interpreter again
    assert out["later"]["retried"] == 1 and out["later"]["fallback"] == 6
    assert out["map"] == [5.0] * 20
    assert out["after_map"]["retried"] == 1 and out["after_map"]["fallback"] == 26
    assert out["after_map"]["interpreter"] == 0
    logged = [line for line in proc.stderr.splitlines() if line.startswith("LOG multigil")]
    assert len(logged) == 1, proc.stderr
    assert "__main__.norm" in logged[0] and "process" in logged[0] and "numpy" in logged[0]


def test_mixed_map_keeps_order_in_every_form(tmp_path: Path) -> None:
    proc = run_script(tmp_path, TASKS + """
import asyncio

ITEMS = [1, np.arange(4), 2, 3, np.ones(2), 4, np.full(3, 2), 5]
EXPECTED = [2, 6.0, 4, 6, 2.0, 8, 6.0, 10]

async def amap(pool):
    return [r async for r in pool.amap(either, ITEMS, chunksize=1)]

if __name__ == "__main__":
    out = {}
    with InterpreterPoolExecutor(2, fallback="process") as pool:
        out["ordered"] = list(pool.map(either, ITEMS, timeout=120)) == EXPECTED
        out["chunked"] = list(pool.map(either, ITEMS, chunksize=3)) == EXPECTED
        out["lazy"] = list(pool.map(either, iter(ITEMS), buffersize=4)) == EXPECTED
        out["unordered"] = sorted(pool.map(either, ITEMS, ordered=False)) == sorted(EXPECTED)
        out["amap"] = asyncio.run(amap(pool)) == EXPECTED
        # a map over different kinds of calls, one function
        calls = [(numpy_user.total, [1, 2]), (pure, 4), (len, np.arange(7)), (norm, [6.0, 8.0])]
        out["calls"] = list(pool.map(lambda fa: fa[0](fa[1]), calls))
        stats = pool.stats()
        out["both"] = stats.interpreter > 0 and stats.fallback > 0
    print(json.dumps(out))
""")
    out = report(proc)
    assert out == {"ordered": True, "chunked": True, "lazy": True, "unordered": True,
                   "amap": True, "calls": [3, 14, 7, 10.0], "both": True}


def test_large_arguments_and_results_cross_while_every_process_is_busy(
        tmp_path: Path) -> None:
    # Arrays far larger than a pipe's buffer, both ways, with more tasks
    # than processes: the pipes never block each other, every task finishes.
    proc = run_script(tmp_path, TASKS + """
def double(a):
    return a * 2

if __name__ == "__main__":
    arrays = [np.full(1_000_000, float(i)) for i in range(12)]   # 8 MB each
    with InterpreterPoolExecutor(2, fallback="process") as pool:
        futures = [pool.submit(double, a) for a in arrays]
        sums = [float(f.result(120).sum()) for f in futures]
        ran_in = sorted({f.ran_in for f in futures})
    print(json.dumps({"sums": sums, "ran_in": ran_in}))
""")
    assert report(proc) == {"sums": [2_000_000.0 * i for i in range(12)], "ran_in": ["process"]}


def test_a_worker_that_hands_a_queued_task_over_is_idle_again(tmp_path: Path) -> None:
    # The second task is queued before the first one's failure decides that
    # its function goes to the fallback: the worker skips it and waits for
    # the next task, counted idle (as the pool counts a worker that finished
    # a task), so that a later task does not start a worker for nothing.
    proc = run_script(tmp_path, TASKS + """
if __name__ == "__main__":
    with InterpreterPoolExecutor(1, fallback="process") as pool:
        first, second = pool.submit(norm, [3.0, 4.0]), pool.submit(norm, [6.0, 8.0])
        results = [first.result(60), second.result(60)]
        out = {"results": results, "retried": pool.stats().retried,
               "idle": pool._pool.idle, "pure": pool.submit(pure, 3).result(60)}
    print(json.dumps(out))
""")
    assert report(proc) == {"results": [5.0, 10.0], "retried": 1, "idle": 1, "pure": 5}


def test_exception_of_a_fallen_back_task_keeps_type_and_traceback(tmp_path: Path) -> None:
    proc = run_script(tmp_path, TASKS + """
def broken(x):
    np.zeros(1)
    raise KeyError(f"no {x}")

def in_map(x):
    np.zeros(1)
    if x == 3:
        raise ValueError("three")
    return x

if __name__ == "__main__":
    out = {}
    with InterpreterPoolExecutor(2, fallback="process") as pool:
        for attempt in ("retried", "routed"):
            fut = pool.submit(broken, attempt)
            exc = fut.exception(60)
            out[attempt] = {"type": type(exc).__name__, "msg": str(exc), "stage": fut.stage,
                            "ran_in": fut.ran_in, "cause": type(exc.__cause__).__name__,
                            "traceback": exc.__cause__.excinfo.errdisplay}
        got = []
        try:
            for r in pool.map(in_map, range(6), chunksize=2):
                got.append(r)
        except ValueError as exc:
            out["map"] = [got, str(exc), "line" in exc.__cause__.excinfo.errdisplay]
        out["after"] = pool.submit(norm, [1.0]).result(60)
    print(json.dumps(out))
""", name="errors.py")
    out = report(proc)
    for attempt in ("retried", "routed"):
        got = out[attempt]
        assert got["type"] == "KeyError" and got["msg"] == f"'no {attempt}'"
        assert got["stage"] == "call" and got["ran_in"] == "process"
        assert got["cause"] == "ExecutionFailed"
        tb = got["traceback"]
        assert 'errors.py", line' in tb and "in broken" in tb and "KeyError" in tb, tb
        assert "_fallback_worker" not in tb
    assert out["map"] == [[0, 1, 2], "three", True]
    assert out["after"] == 1.0


def test_timeout_and_cancel_stop_fallen_back_tasks(tmp_path: Path) -> None:
    # One worker, so one process: each check below passes only if the
    # process was freed, i.e. the runaway task was really interrupted.
    proc = run_script(tmp_path, TASKS + """
import time
import concurrent.futures as cf

if __name__ == "__main__":
    out = {}
    marks = os.path.join(os.getcwd(), "marks.txt")
    with InterpreterPoolExecutor(1, fallback="process") as pool:
        pool.submit(norm, [1.0]).result(60)                 # the processes are up
        # timeouts: the first spin is retried from an interpreter, the
        # second goes straight to the process
        for name in ("timeout_retried", "timeout_routed"):
            t0 = time.monotonic()
            fut = pool.schedule(spin, timeout=0.5)
            exc = fut.exception(60)
            out[name] = [type(exc).__name__, fut.ran_in, round(time.monotonic() - t0) < 30]
            out[name + "_next"] = pool.submit(norm, [3.0, 4.0]).result(60)
        # cancel(interrupt=True) of a running task
        running = pool.submit(spin)
        while not running.running():
            time.sleep(0.01)
        out["plain_cancel"] = running.cancel()            # running: the stdlib's False
        time.sleep(0.3)                                    # let it spin in its process
        out["interrupt"] = [running.cancel(interrupt=True), running.cancelled()]
        out["interrupt_next"] = pool.submit(norm, [6.0, 8.0]).result(60)
        # plain cancel() of a queued task: it never runs
        blocker = pool.schedule(spin, timeout=2)
        queued = [pool.submit(append, marks, f"q{i}") for i in range(4)]
        out["queued_cancel"] = [f.cancel() for f in queued[2:]]
        cf.wait(queued[:2] + [blocker], timeout=60)
        out["queued_ran"] = [f.result(0) for f in queued[:2]]
        out["queued_cancelled"] = [f.cancelled() for f in queued[2:]]
        # shutdown(cancel_futures=True) cancels the tasks not started
        blocker = pool.schedule(spin, timeout=2)
        later = [pool.submit(append, marks, f"s{i}") for i in range(3)]
        pool.shutdown(wait=True, cancel_futures=True)
        out["shutdown_cancelled"] = sum(f.cancelled() for f in later)
    with open(marks) as f:
        out["marks"] = f.read().split()
    print(json.dumps(out))
""")
    out = report(proc)
    for name in ("timeout_retried", "timeout_routed"):
        assert out[name] == ["TimeoutError", "process", True], out
        assert out[name + "_next"] == 5.0
    assert out["plain_cancel"] is False
    assert out["interrupt"] == [True, True]
    assert out["interrupt_next"] == 10.0
    assert out["queued_cancel"] == [True, True]
    assert out["queued_ran"] == ["q0", "q1"]
    assert out["queued_cancelled"] == [True, True]
    # at most the one already handed to the process may run
    assert out["shutdown_cancelled"] >= 2
    assert out["marks"][:2] == ["q0", "q1"] and "q2" not in out["marks"] and "q3" not in out["marks"]


def test_task_that_raised_after_a_side_effect_is_not_run_again(tmp_path: Path) -> None:
    # The ImportError comes from the task's own code, after it wrote to a
    # file: it must not run a second time in a process.
    proc = run_script(tmp_path, DESCRIBE + """
import os
from multigil import InterpreterPoolExecutor

def write_then_import(path):
    with open(path, "a") as f:
        f.write("ran\\n")
    import numpy
    return numpy.__name__

if __name__ == "__main__":
    path = os.path.join(os.getcwd(), "effects.txt")
    with InterpreterPoolExecutor(2, fallback="process") as pool:
        fut = pool.submit(write_then_import, path)
        out = describe(fut)
        out["ran_in"] = fut.ran_in
        again = pool.submit(write_then_import, path)      # not decided: the same again
        out["again"] = [type(again.exception(60)).__name__, again.ran_in]
        out["stats"] = pool.stats()._asdict()
    with open(path) as f:
        out["lines"] = f.read().split()
    print(json.dumps(out))
""")
    out = report(proc)
    assert out["type"] == "InterpreterImportError" and out["stage"] == "call", out
    assert out["ran_in"] == "interpreter"
    assert out["again"] == ["InterpreterImportError", "interpreter"]
    assert out["lines"] == ["ran", "ran"]                 # once per task, never twice
    assert out["stats"]["retried"] == 0 and out["stats"]["fallback"] == 0


def test_strict_default_fails_with_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    proc = run_script(tmp_path, TASKS + """
if __name__ == "__main__":
    out = {}
    with InterpreterPoolExecutor(2) as pool:
        out["fallback"] = pool.fallback
        for name, fut in {"function": pool.submit(norm, [1.0]),
                          "arguments": pool.submit(len, np.arange(3))}.items():
            exc = fut.exception(60)
            out[name] = [type(exc).__name__, fut.stage, fut.ran_in, str(exc)]
        out["stats"] = pool.stats()._asdict()
    try:
        InterpreterPoolExecutor(1, fallback="thread")
    except ValueError as exc:
        out["bad_value"] = str(exc)
    print(json.dumps(out))
""")
    out = report(proc)
    assert out["fallback"] is None
    name, stage, ran_in, msg = out["function"]
    assert (name, stage, ran_in) == ("InterpreterImportError", "function", "interpreter")
    assert "numpy" in msg and 'fallback="process"' in msg
    name, stage, ran_in, msg = out["arguments"]
    assert (name, stage) == ("NotShareableError", "arguments")
    assert "numpy" in msg and 'fallback="process"' in msg
    # the two tasks' outcomes came from the interpreters
    assert out["stats"] == {"interpreter": 2, "fallback": 0, "retried": 0,
                            "fallback_functions": []}
    assert "fallback must be None or 'process'" in out["bad_value"]


def test_failures_the_process_pool_reports(tmp_path: Path) -> None:
    # An argument that cannot be pickled for the process, a result that
    # cannot come back from it: the future fails at once with the stage,
    # and the fallback goes on.
    proc = run_script(tmp_path, TASKS + """
import threading

def make_lock(x):
    np.zeros(1)
    return threading.Lock()

def needs_numpy(x):
    np.zeros(1)
    return 1

if __name__ == "__main__":
    out = {}
    with InterpreterPoolExecutor(2, fallback="process") as pool:
        pool.submit(needs_numpy, 0).result(60)              # decided
        for name, fut in {"arguments": pool.submit(needs_numpy, threading.Lock()),
                          "result": pool.submit(make_lock, 0)}.items():
            got = describe(fut)
            got["ran_in"] = fut.ran_in
            out[name] = got
        out["after"] = pool.submit(needs_numpy, 2).result(60)
    print(json.dumps(out))
""")
    out = report(proc)
    for stage in ("arguments", "result"):
        got = out[stage]
        assert got["type"] == "NotShareableError" and got["stage"] == stage, got
        assert "lock" in got["message"]
    assert out["result"]["ran_in"] == "process"
    assert out["after"] == 1


def test_a_process_that_dies_fails_its_task_and_the_others_go_on(tmp_path: Path) -> None:
    # A fallback process that exits in a task fails that task with
    # BrokenProcessPool (it never stays pending); the tasks queued behind it
    # run, in a new process.
    proc = run_script(tmp_path, TASKS + """
import concurrent.futures as cf

def die():
    np.zeros(1)
    os._exit(3)

if __name__ == "__main__":
    out = {}
    with InterpreterPoolExecutor(1, fallback="process") as pool:
        pool.submit(norm, [1.0]).result(60)                 # decided
        pool.submit(die).exception(60)                      # decided too (and died)
        dying = pool.submit(die)
        behind = [pool.submit(norm, [float(i)]) for i in range(3)]
        done, pending = cf.wait([dying, *behind], timeout=60)
        out["pending"] = len(pending)
        exc = dying.exception(0)
        out["dying"] = [type(exc).__name__, dying.ran_in, dying.stage]
        out["message"] = str(exc)
        out["behind"] = [f.result(0) for f in behind]
        last = pool.submit(norm, [3.0, 4.0])
        out["after"] = last.result(60)
        out["ran_in"] = last.ran_in
    print(json.dumps(out))
""")
    out = report(proc)
    assert out["pending"] == 0, out
    assert out["dying"] == ["BrokenProcessPool", "process", None], out
    assert "exited with code 3 while it ran this task" in out["message"], out
    assert out["behind"] == [0.0, 1.0, 2.0]
    assert out["after"] == 5.0 and out["ran_in"] == "process"


def test_a_process_that_cannot_be_set_up_fails_the_waiting_tasks(tmp_path: Path) -> None:
    # The initializer runs in the interpreters and in the fallback's
    # processes; where it fails in a process (raises, or ends the process),
    # the tasks waiting for one fail with BrokenProcessPool saying why, and
    # nothing stays pending.
    proc = run_script(tmp_path, TASKS + """
import concurrent.futures as cf
import multiprocessing

def init(how):
    if multiprocessing.parent_process() is None:
        return                                    # the pool's interpreters
    if how == "raise":
        raise ValueError("no database here")
    os._exit(4)

if __name__ == "__main__":
    out = {}
    for how in ("raise", "exit"):
        with InterpreterPoolExecutor(1, fallback="process", initializer=init,
                                     initargs=(how,)) as pool:
            futures = [pool.submit(norm, [1.0]) for _ in range(3)]
            # a task that comes as the process fails (from a done-callback,
            # in the thread that reads the processes) still gets a process
            late = []
            futures[0].add_done_callback(lambda f: late.append(pool.submit(norm, [2.0])))
            cf.wait(futures, timeout=60)
            done, pending = cf.wait(futures + late, timeout=60)
            out[how + "_late"] = len(late)
            out[how] = [len(pending), sorted({type(f.exception(0)).__name__ for f in done}),
                        str(futures[0].exception(0))]
            out[how + "_pure"] = pool.submit(pure, 3).result(60)
    print(json.dumps(out))
""")
    out = report(proc)
    assert out["raise"][:2] == [0, ["BrokenProcessPool"]], out
    assert "could not set up a process: ValueError: no database here" in out["raise"][2], out
    assert out["exit"][:2] == [0, ["BrokenProcessPool"]], out
    assert "exited with code 4 while it was being set up" in out["exit"][2], out
    assert out["raise_pure"] == out["exit_pure"] == 5
    assert out["raise_late"] == out["exit_late"] == 1


def test_max_tasks_per_worker_replaces_the_processes_too(tmp_path: Path) -> None:
    # As the interpreters start afresh after max_tasks_per_worker tasks, so do
    # the fallback's processes: a fresh process takes over, no task fails.
    proc = run_script(tmp_path, TASKS + """
def pid_of(i):
    np.zeros(1)
    return os.getpid()

if __name__ == "__main__":
    with InterpreterPoolExecutor(2, fallback="process", max_tasks_per_worker=2) as pool:
        one_by_one = [pool.submit(pid_of, i).result(60) for i in range(6)]
        burst = [f.result(60) for f in [pool.submit(pid_of, i) for i in range(12)]]
    counts = {pid: (one_by_one + burst).count(pid) for pid in set(one_by_one + burst)}
    print(json.dumps({"most": max(counts.values()), "processes": len(counts)}))
""")
    out = report(proc)
    assert out["most"] <= 2, out
    assert out["processes"] >= 9, out


def test_processes_get_the_pool_setup_and_the_script_globals(tmp_path: Path) -> None:
    # shared= and the initializer run in the fallback's processes as in the
    # worker interpreters; a script function sees the script's globals there.
    proc = run_script(tmp_path, TASKS + """
def init(value):
    global STARTED
    STARTED = value

def setup_seen():
    np.zeros(1)
    return FACTOR, STARTED

if __name__ == "__main__":
    with InterpreterPoolExecutor(2, fallback="process", shared={"FACTOR": 3},
                                 initializer=init, initargs=("yes",)) as pool:
        print(json.dumps({"seen": pool.submit(setup_seen).result(60),
                          "pure": pool.submit(pure, 3).result(60)}))
""")
    assert report(proc) == {"seen": [3, "yes"], "pure": 5}


def test_asyncio_api_and_multigil_run(tmp_path: Path) -> None:
    proc = run_script(tmp_path, TASKS + """
import asyncio
import multigil

async def main():
    pool = InterpreterPoolExecutor(2, fallback="process")
    with pool:
        one = await pool.run(norm, [3.0, 4.0])
        many = [r async for r in pool.amap(norm, [[1.0]] * 5)]
        task = asyncio.ensure_future(pool.run(spin))
        await asyncio.sleep(1.0)
        task.cancel()                             # interrupts it in its process
        try:
            await task
        except asyncio.CancelledError:
            cancelled = True
        after = await asyncio.wait_for(pool.run(norm, [6.0, 8.0]), 60)
    default = await multigil.run(norm, [5.0, 12.0], fallback="process")
    plain = await multigil.run(pure, 3)
    return {"one": one, "many": many, "cancelled": cancelled, "after": after,
            "default": default, "plain": plain}

if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
""")
    assert report(proc) == {"one": 5.0, "many": [1.0] * 5, "cancelled": True, "after": 10.0,
                            "default": 13.0, "plain": 5}


def test_exit_finishes_fallen_back_tasks(tmp_path: Path) -> None:
    # As with the stdlib executors, work submitted is done before the
    # program exits -- also the tasks that the workers hand to the
    # processes while the program exits.
    proc = run_script(tmp_path, TASKS + """
if __name__ == "__main__":
    path = os.path.join(os.getcwd(), "done.txt")
    pool = InterpreterPoolExecutor(2, fallback="process")
    for i in range(6):
        pool.submit(append, path, f"t{i}")
    print(json.dumps({"submitted": 6}))
""")
    assert report(proc) == {"submitted": 6}
    assert sorted((tmp_path / "done.txt").read_text().split()) == [f"t{i}" for i in range(6)]
    assert "Fatal Python error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_in_a_daemonic_process_the_fallback_says_why_it_cannot_run(tmp_path: Path) -> None:
    proc = run_script(tmp_path, TASKS + """
import multiprocessing

def in_daemon(q):
    with InterpreterPoolExecutor(1, fallback="process") as pool:
        exc = pool.submit(numpy_user.total, [1]).exception(60)
        q.put([type(exc).__name__, str(exc)])

if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=in_daemon, args=(q,), daemon=True)
    p.start()
    got = q.get(timeout=120)
    p.join(60)
    print(json.dumps(got))
""")
    name, message = report(proc)
    assert name == "RuntimeError"
    assert "daemonic" in message and "cannot start processes" in message, message
    assert message.startswith("the process fallback could not run the task")


def test_ctrl_c_stops_a_task_in_its_process_and_exits_cleanly(tmp_path: Path) -> None:
    # A terminal's Ctrl-C reaches every process of its group.  The main
    # process answers it (the task is interrupted in its process, the
    # processes end); the fallback's processes print no traceback of their own.
    import os
    import signal
    import subprocess

    script = tmp_path / "script.py"
    script.write_text(TASKS + """
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)

def spin_in_process():
    np.zeros(1)
    print("running", os.getpid(), flush=True)
    while True:
        pass

if __name__ == "__main__":
    with InterpreterPoolExecutor(1, fallback="process") as pool:
        pool.submit(spin_in_process).result()
""")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=script_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line.startswith("running"), (line, proc.stderr.read())
        worker = int(line.split()[1])
        os.killpg(proc.pid, signal.SIGINT)
        status = proc.wait(timeout=60)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert status in (-signal.SIGINT, 130, 1), err
    assert err.count("Traceback") == 1 and "KeyboardInterrupt" in err, err
    assert "Fatal Python error" not in err
    # the process it ran in ended before the program did (it was joined)
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)


def test_a_storm_of_deaths_cancels_timeouts_and_large_results_leaves_nothing_pending(
        tmp_path: Path) -> None:
    # 400 tasks on 2 processes, seeded: some end their process, some time
    # out or are cancelled (also while they run), some return 2.4 MB.  Every
    # future completes; only the tasks that ended their process fail with
    # BrokenProcessPool; every other result is right.
    proc = run_script(tmp_path, TASKS + """
import random
import time
import concurrent.futures as cf

def work(kind, n):
    np.zeros(1)
    if kind == "die":
        os._exit(7)
    if kind == "spin":
        end = time.monotonic() + n
        while time.monotonic() < end:
            pass
    if kind == "big":
        return np.ones(n)
    if kind == "raise":
        raise ValueError(n)
    return n

if __name__ == "__main__":
    rnd = random.Random(7)
    calls = []
    with InterpreterPoolExecutor(2, fallback="process") as pool:
        for i in range(400):
            r = rnd.random()
            kind = ("die" if r < 0.03 else "spin" if r < 0.10 else "big" if r < 0.15
                    else "raise" if r < 0.20 else "pure" if r < 0.40 else "ok")
            if kind == "spin":
                fut = pool.schedule(work, (kind, rnd.choice([0.01, 0.3])), timeout=0.1)
            elif kind == "pure":
                fut = pool.submit(pure, i)
            else:
                fut = pool.submit(work, kind, 300_000 if kind == "big" else i)
            calls.append((kind, i, fut))
            if rnd.random() < 0.1:
                rnd.choice(calls)[2].cancel(interrupt=rnd.random() < 0.5)
        done, pending = cf.wait([fut for _, _, fut in calls], timeout=120)
        wrong = []
        for kind, i, fut in calls:
            if fut in pending or fut.cancelled():
                continue
            exc = fut.exception()
            got = type(exc).__name__ if exc else fut.result()
            expected = {"die": "BrokenProcessPool", "raise": "ValueError",
                        "pure": sum(j * j for j in range(i)), "ok": i}.get(kind)
            if kind == "spin":
                ok = got in ("TimeoutError", 0.01)
            elif kind == "big":
                ok = exc is None and float(got.sum()) == 300_000
            else:
                ok = got == expected
            if not ok:
                wrong.append([kind, i, str(exc or got)[:200]])
        out = {"pending": len(pending), "wrong": wrong, "died": sum(
            1 for kind, _, fut in calls if kind == "die" and not fut.cancelled())}
    print(json.dumps(out))
""")
    out = report(proc)
    assert out["pending"] == 0 and out["wrong"] == [], out
    assert out["died"] > 0
