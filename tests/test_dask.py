"""multigil.dask on a real distributed cluster: worker processes started by
Dask's nanny, tasks annotated with ``executor="interpreters"``.

Starting a cluster takes seconds, so one cluster (two worker processes, two
threads each) serves the module; the tests that stop or restart workers leave
it as they found it.  Every wait is bounded.
"""

from __future__ import annotations

import operator
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import dask.bag as db  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

import engine_tasks as tasks  # noqa: E402
import multigil  # noqa: E402
from multigil.dask import InterpreterPoolPlugin, InterpreterTaskExecutor  # noqa: E402

pytestmark = pytest.mark.timeout(180)

TIMEOUT = 60  # for results that should come within seconds
PLUGIN_NAME = "multigil-interpreters-interpreters"


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        c.register_plugin(InterpreterPoolPlugin())
        yield c


def worker_pids(client: Client) -> set[int]:
    return set(client.run(os.getpid).values())


def annotated():  # type: ignore[no-untyped-def]
    return dask.annotate(executor="interpreters")


# ---------------------------------------------------------------- routing --

def test_worker_processes_are_spawned_not_forked():
    # fork() with interpreters alive kills the child: the nanny must not fork.
    assert dask.config.get("distributed.worker.multiprocessing-method") in ("spawn", "forkserver")


def test_annotated_tasks_run_in_interpreters_others_in_the_worker(client):
    pids = worker_pids(client)
    plain = client.gather(client.map(tasks.where, range(8)), errors="raise")
    with annotated():
        futures = client.map(tasks.where, range(8), key=[f"where-ann-{i}" for i in range(8)])
    inside = client.gather(futures)
    assert {interp for interp, _, _ in plain} == {0}
    assert all(interp != 0 for interp, _, _ in inside)
    assert {pid for _, pid, _ in plain} <= pids
    assert {pid for _, pid, _ in inside} <= pids
    assert [x for _, _, x in inside] == list(range(8))


def test_each_worker_has_the_named_executor(client):
    def describe(dask_worker):  # type: ignore[no-untyped-def]
        ex = dask_worker.executors["interpreters"]
        return type(ex).__name__, ex.max_workers

    assert set(client.run(describe).values()) == {("InterpreterTaskExecutor", 2)}


# ------------------------------------------------------------ collections --

def test_delayed_graph_with_dependencies_kwargs_and_containers(client):
    with annotated():
        a = dask.delayed(tasks.inc)(1, y=10)                 # 12
        b = dask.delayed(tasks.inc)(a)                        # 13
        c = dask.delayed(tasks.add)(*[a, b, 5])               # 30
        d = dask.delayed(tasks.add)(*[dask.delayed(tasks.square)(i) for i in range(4)])
        ids = [dask.delayed(tasks.interpreter_id)(x) for x in (a, b, c)]
        result = dask.compute(c, d, ids, scheduler=client)
    assert result[:2] == (30, 14)
    assert all(i != 0 for i in result[2])


def test_delayed_container_arguments(client):
    # A list or dict of results as one argument: Dask passes a container node.
    with annotated():
        parts = [dask.delayed(tasks.square)(i) for i in range(3)]
        total = dask.delayed(sum)(parts)
        named = dask.delayed(dict)(a=parts[0], b=parts[2])
        assert dask.compute(total, named, scheduler=client) == (5, {"a": 0, "b": 4})


def test_futures_submit_and_map(client):
    with annotated():
        x = client.submit(tasks.inc, 1, y=1, key="inc-x")        # 3
        y = client.submit(tasks.add, x, 10, key="add-y")         # 13
        squares = client.map(tasks.square, range(5), key=[f"sq-{i}" for i in range(5)])
        total = client.submit(tasks.add, *squares, key="add-squares")
        where_y = client.submit(tasks.where, y, key="where-y")
    assert y.result(timeout=TIMEOUT) == 13
    assert total.result(timeout=TIMEOUT) == 30
    interp, _, value = where_y.result(timeout=TIMEOUT)
    assert interp != 0 and value == 13


def test_bag_map_filter_fold(client):
    with annotated():
        bag = db.from_sequence(range(20), npartitions=4)
        odd = bag.map(tasks.inc).filter(lambda v: v % 2)          # 1, 3, ..., 19
        if sys.version_info < (3, 13):
            # dask.bag imports fsspec, which imports ctypes: CPython 3.12
            # cannot load _ctypes in an isolated interpreter.  The tasks
            # fail at once, naming it.
            with pytest.raises(ImportError, match="_ctypes"):
                odd.compute()
            return
        where = odd.map(tasks.where).compute()
        total = odd.sum().compute()
        folded = odd.fold(tasks.add, initial=0).compute()
        by_rest = dict(bag.foldby(lambda v: v % 3, operator.add, 0, operator.add, 0).compute())
    assert [v for _, _, v in where] == list(range(1, 20, 2))
    assert all(interp != 0 for interp, _, _ in where)
    assert total == folded == 100
    assert by_rest == {0: sum(range(0, 20, 3)), 1: sum(range(1, 20, 3)), 2: sum(range(2, 20, 3))}


def test_function_whose_module_refuses_interpreters_fails_cleanly(client):
    import numpy_user

    with annotated():
        future = client.submit(numpy_user.total, [1, 2], key="numpy-user")
    with pytest.raises(ImportError, match="numpy"):
        future.result(timeout=TIMEOUT)
    # Without the annotation it runs in the worker, where numpy imports.
    assert client.submit(numpy_user.total, [1, 2], key="numpy-user-plain").result(timeout=TIMEOUT) == 3


def test_fallback_runs_refusing_tasks_in_the_worker_s_threads(client):
    # A Dask worker process is daemonic and cannot start processes: with
    # fallback="process" the tasks that refuse interpreters run in threads of
    # the worker, as tasks without the annotation do.
    import numpy as np
    import numpy_user

    client.register_plugin(InterpreterPoolPlugin(name="fallback", fallback="process"))
    try:
        with dask.annotate(executor="fallback"):
            totals = client.map(numpy_user.total, [[i, 1] for i in range(6)],
                                key=[f"fb-total-{i}" for i in range(6)])
            sizes = client.map(len, [np.arange(i) for i in range(4)],
                               key=[f"fb-len-{i}" for i in range(4)])
            places = client.map(numpy_user.place, range(4), key=[f"fb-place-{i}" for i in range(4)])
            pure = client.map(tasks.where, range(4), key=[f"fb-pure-{i}" for i in range(4)])
            chained = dask.delayed(numpy_user.total)([dask.delayed(tasks.inc)(1), 5])
            bad = client.submit(numpy_user.total, [1, "x"], key="fb-bad")
            chained_total = dask.compute(chained, scheduler=client)[0]
        assert client.gather(totals) == [1, 2, 3, 4, 5, 6]
        assert client.gather(sizes) == [0, 1, 2, 3]
        pids = worker_pids(client)
        assert all(interp == 0 and pid in pids for pid, interp in client.gather(places))
        assert all(interp != 0 for interp, _, _ in client.gather(pure))
        assert chained_total == 7
        with pytest.raises(TypeError, match="unsupported operand") as info:
            bad.result(timeout=TIMEOUT)
        assert "numpy_user.py" in info.value.__cause__.excinfo.errdisplay

        def fallback_stats(dask_worker):  # type: ignore[no-untyped-def]
            pool = dask_worker.executors["fallback"].pool
            return pool.fallback, pool.stats().fallback

        stats = client.run(fallback_stats).values()
        assert {kind for kind, _ in stats} == {"thread"}
        assert sum(n for _, n in stats) == 6 + 4 + 4 + 1 + 1
    finally:
        client.unregister_worker_plugin("multigil-interpreters-fallback")


def test_lambdas_and_closures_from_the_client(client):
    offset = 100
    with annotated():
        futures = client.map(lambda v: (tasks.interpreter_id(), v + offset), range(4),
                             key=[f"closure-{i}" for i in range(4)])
    results = client.gather(futures)
    assert [v for _, v in results] == [100, 101, 102, 103]
    assert all(i != 0 for i, _ in results)


def test_plans_compute_what_dask_computes():
    # Every task of real, optimised graphs (fused bag chains, containers,
    # aliases, keyword arguments), evaluated the way the executor runs it,
    # gives what Dask's own evaluation of the node gives.
    from dask.order import order

    from multigil._integrations import _calls, _dask_plan

    bag = db.from_sequence(range(30), npartitions=3)
    parts = [dask.delayed(tasks.square)(i) for i in range(3)]
    graphs = [
        bag.map(tasks.inc).filter(lambda v: v % 2).sum(),
        bag.map(tasks.inc, y=2).fold(tasks.add, initial=0),
        bag.foldby(lambda v: v % 3, operator.add, 0, operator.add, 0),
        dask.delayed(dict)(a=parts[0], b=[parts[1], {"c": parts[2]}]),
        dask.delayed(tasks.add)(*parts, dask.delayed(tasks.inc)(parts[0], y=parts[1])),
    ]
    forms, ops = set(), set()
    for collection in graphs:
        (optimised,) = dask.optimize(collection)
        dsk = dict(optimised.__dask_graph__())
        results: dict = {}
        for key in sorted(dsk, key=order(dsk).__getitem__):
            node = dsk[key]
            data = {k: results[k] for k in node.dependencies}
            expected = node(data)
            form, what = _dask_plan.translate(node, data)
            forms.add(form)
            if form == "call":
                func, args, kwargs = what
                got = _calls.timed_call(func, args, kwargs)[2]
            elif form == "plan":
                ops.add(what[0][0])
                got = _calls.timed_plan(*what)[2]
            else:
                got = expected
            assert got == expected, (key, node)
            results[key] = expected
    assert forms == {"call", "plan", "local"}
    assert {_calls.GRAPH, _calls.CALL} <= ops


# ---------------------------------------------------------------- errors --

def test_error_keeps_type_message_and_remote_traceback(client):
    with annotated():
        future = client.submit(tasks.boom, 7, key="boom-7")
    with pytest.raises(ValueError, match="boom 7") as info:
        future.result(timeout=TIMEOUT)
    cause = info.value.__cause__
    assert isinstance(cause, multigil.ExecutionFailed)
    assert "in boom" in cause.excinfo.errdisplay
    assert "engine_tasks.py" in cause.excinfo.errdisplay
    assert future.status == "error"
    # A failed task does not harm the pool: the next one runs.
    with annotated():
        assert client.submit(tasks.inc, 1, key="after-boom").result(timeout=TIMEOUT) == 2


def test_dependents_of_a_failed_task_fail_with_its_error(client):
    with annotated():
        bad = dask.delayed(tasks.boom)(1)
        after = dask.delayed(tasks.inc)(bad)
        with pytest.raises(ValueError, match="boom 1"):
            after.compute(scheduler=client)


def test_result_that_cannot_cross_fails_that_task(client):
    with annotated():
        future = client.submit(tasks.where, key="ok-before")
        bad = client.submit(lambda: __import__("threading").Lock(), key="lock-result")
    assert future.result(timeout=TIMEOUT)[0] != 0
    with pytest.raises(multigil.NotShareableError, match="lock"):
        bad.result(timeout=TIMEOUT)


def test_unknown_executor_name_is_dask_s_error(client):
    with dask.annotate(executor="no-such-executor"):
        future = client.submit(tasks.inc, 1, key="bad-executor")
    with pytest.raises(ValueError, match="no-such-executor"):
        future.result(timeout=TIMEOUT)


# ------------------------------------------------- restart, plugin removal --

def test_worker_restart_brings_the_interpreters_back(client):
    before = worker_pids(client)
    client.restart(timeout=TIMEOUT)
    after = worker_pids(client)
    assert len(after) == 2 and not (after & before)
    with annotated():
        results = client.gather(client.map(tasks.where, range(4), key=[f"re-{i}" for i in range(4)]))
    assert all(interp != 0 for interp, _, _ in results)
    assert {pid for _, pid, _ in results} <= after


def test_unregistering_the_plugin_closes_the_interpreters(client):
    with annotated():
        client.submit(tasks.inc, 1, key="warm-before-unregister").result(timeout=TIMEOUT)
    assert set(client.run(tasks.live_interpreters).values()) == {3}   # main + 2
    client.unregister_worker_plugin(PLUGIN_NAME)
    try:
        assert set(client.run(tasks.live_interpreters).values()) == {1}
        assert not any(client.run(lambda dask_worker: "interpreters" in dask_worker.executors).values())
    finally:
        client.register_plugin(InterpreterPoolPlugin())
    with annotated():
        assert client.submit(tasks.interpreter_id, key="after-reregister").result(timeout=TIMEOUT) != 0


# ----------------------------------------------------- the plugin itself --

def test_plugin_arguments_are_checked():
    with pytest.raises(ValueError):
        InterpreterPoolPlugin(0)
    with pytest.raises(TypeError):
        InterpreterPoolPlugin(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        InterpreterPoolPlugin(name="")
    plugin = InterpreterPoolPlugin(3, name="cpu", max_tasks_per_worker=10)
    assert plugin.name == "multigil-interpreters-cpu"
    assert plugin.pool_options == {"max_tasks_per_worker": 10}


def test_executor_is_not_mistaken_for_a_thread_pool():
    # distributed sends a different, unpicklable callable to any executor
    # whose type's repr contains "ThreadPoolExecutor".
    assert "ThreadPoolExecutor" not in str(InterpreterTaskExecutor)
    with InterpreterTaskExecutor(1) as ex:
        assert ex.submit(tasks.interpreter_id).result(timeout=TIMEOUT) != 0


# ------------------------------------------ real scripts, CLI, shutdown --

def run_python(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def assert_clean_exit(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for sign in ("Fatal Python error", "Segmentation fault", "remaining subinterpreters",
                 "leaked", "Task was destroyed"):
        assert sign not in proc.stderr, proc.stderr


def test_script_with_main_functions_and_shutdown_during_work(tmp_path: Path):
    # Functions of the script's __main__ travel by value; the cluster is
    # closed while annotated tasks are still running: the workers stop them
    # and exit cleanly, and so does the script.
    script = tmp_path / "dask_script.py"
    script.write_text(textwrap.dedent("""
        import time
        import dask
        from distributed import Client, LocalCluster
        from multigil import interpreters
        from multigil.dask import InterpreterPoolPlugin

        def where(x):
            return interpreters.get_current().id, x * 2

        def spin(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                pass

        if __name__ == "__main__":
            with LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                              dashboard_address=":0") as cluster, Client(cluster) as client:
                client.register_plugin(InterpreterPoolPlugin())
                with dask.annotate(executor="interpreters"):
                    results = client.gather(client.map(where, range(6)))
                    running = client.map(spin, [600, 601, 602, 603])
                assert all(i != 0 for i, _ in results), results
                print("results", [v for _, v in results], flush=True)
                t0 = time.monotonic()
                while sum(len(v) for v in client.processing().values()) < 4:
                    assert time.monotonic() - t0 < 60, "tasks did not start"
                    time.sleep(0.05)
                t0 = time.monotonic()
            print(f"closed in {time.monotonic() - t0:.1f} s", flush=True)
    """))
    proc = run_python([str(script)], timeout=150)
    assert_clean_exit(proc)
    assert "results [0, 2, 4, 6, 8, 10]" in proc.stdout
    assert "closed in" in proc.stdout


def test_dask_worker_cli_with_preload(tmp_path: Path):
    # The documented command line: one worker process, --preload multigil.dask.
    with LocalCluster(n_workers=0, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
             "--nworkers", "1", "--nthreads", "2", "--preload", "multigil.dask",
             "--no-dashboard", "--local-directory", str(tmp_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            stdin=subprocess.DEVNULL)
        try:
            c.wait_for_workers(1, timeout=TIMEOUT)
            # Dask's profiler runs in the worker process (its own config):
            # multigil's sys._current_frames() keeps it safe next to the
            # interpreters, however often it samples.
            threads = c.run(lambda: [t.name for t in __import__("threading").enumerate()])
            assert any("Profile" in names for names in threads.values()), threads
            with annotated():
                interp, pid, _ = c.submit(tasks.where, key="cli-where").result(timeout=TIMEOUT)
                spinning = c.submit(tasks.busy, 3, key="cli-busy")
            assert interp != 0
            for _ in range(20):
                c.call_stack()
            c.profile()
            spinning.result(timeout=TIMEOUT)
            assert c.submit(tasks.where, key="cli-plain").result(timeout=TIMEOUT)[0] == 0
            assert set(c.run(lambda dask_worker: dask_worker.executors["interpreters"].max_workers)
                       .values()) == {2}
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                out, err = worker.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                worker.kill()
                out, err = worker.communicate()
                pytest.fail("dask worker did not exit within a minute of SIGTERM:\n" + err)
    assert worker.returncode == 0, err
    assert "Run preload setup: multigil.dask" in err
    assert "Fatal Python error" not in err


def test_preload_refuses_a_scheduler():
    from multigil.dask import dask_setup

    class Scheduler:
        pass

    with pytest.raises(TypeError, match="worker preload"):
        dask_setup(Scheduler())
