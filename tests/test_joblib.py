"""The joblib backend "multigil": real joblib, calls run in interpreters."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

joblib = pytest.importorskip("joblib")

from joblib import Parallel, delayed, parallel_config  # noqa: E402

import engine_tasks as tasks  # noqa: E402
import multigil  # noqa: E402
import multigil.joblib  # noqa: E402
from multigil.joblib import InterpreterBackend  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def run(n_jobs: int, calls, **kwargs):  # type: ignore[no-untyped-def]
    return Parallel(n_jobs=n_jobs, backend="multigil", **kwargs)(calls)


def test_importing_registers_the_backend():
    from joblib.parallel import BACKENDS

    assert BACKENDS["multigil"] is InterpreterBackend


def test_results_in_order_and_in_interpreters():
    with parallel_config(backend="multigil"):
        out = Parallel(n_jobs=2)(delayed(tasks.where)(i) for i in range(20))
    assert [x for _, _, x in out] == list(range(20))
    assert all(interp != 0 for interp, _, _ in out)
    assert {pid for _, pid, _ in out} == {os.getpid()}


def test_batches_of_every_shape():
    # One function with one argument, with several, with keywords, and
    # batches that mix functions: each crosses in its own compact form.
    n = 20_000
    assert run(2, (delayed(abs)(-i) for i in range(n))) == list(range(n))
    assert run(2, (delayed(tasks.add)(i, i, 1) for i in range(n))) == [2 * i + 1 for i in range(n)]
    assert run(2, (delayed(tasks.inc)(i, y=2) for i in range(n))) == [i + 3 for i in range(n)]
    mixed = [delayed(tasks.square)(i) if i % 2 else delayed(tasks.inc)(i) for i in range(1000)]
    assert run(2, mixed) == [i * i if i % 2 else i + 1 for i in range(1000)]


def test_generator_is_lazy_and_ordered():
    gen = run(2, (delayed(tasks.square)(i) for i in range(50)), return_as="generator")
    assert not isinstance(gen, list)
    assert next(gen) == 0
    assert list(gen) == [i * i for i in range(1, 50)]


def test_generator_unordered_yields_every_result():
    gen = run(2, (delayed(tasks.where)(i) for i in range(50)), return_as="generator_unordered")
    out = list(gen)
    assert sorted(x for _, _, x in out) == list(range(50))
    assert all(interp != 0 for interp, _, _ in out)


def test_exception_type_message_and_remote_traceback():
    with pytest.raises(KeyError, match="bad item 7") as info:
        run(2, (delayed(tasks.fail_on)(i, 7) for i in range(20)))
    cause = info.value.__cause__
    assert isinstance(cause, multigil.ExecutionFailed)
    assert "in fail_on" in cause.excinfo.errdisplay


def test_error_aborts_the_running_calls():
    # Item 0 fails while the others would spin for ten minutes: the abort
    # interrupts them, so the interpreters are free for the next call at once
    # (else this test would run into its timeout).
    calls = [delayed(tasks.fail_on)(0, 0)] + [delayed(tasks.busy)(600 + i) for i in range(3)]
    with pytest.raises(KeyError):
        run(2, calls, batch_size=1)
    assert run(2, (delayed(tasks.square)(i) for i in range(4))) == [0, 1, 4, 9]


def test_timeout_raises_and_frees_the_interpreters():
    with pytest.raises(multiprocessing.TimeoutError):
        run(2, (delayed(tasks.busy)(600 + i) for i in range(2)), timeout=0.5)
    assert run(2, (delayed(tasks.square)(i) for i in range(4))) == [0, 1, 4, 9]


def test_closing_a_generator_early_aborts():
    gen = run(2, (delayed(tasks.busy)(0.001 if i == 0 else 600 + i) for i in range(5)),
              return_as="generator", batch_size=1)
    assert next(gen) == "done"
    with pytest.warns(UserWarning):
        gen.close()
    assert run(2, (delayed(tasks.square)(i) for i in range(4))) == [0, 1, 4, 9]


def test_n_jobs_minus_one_uses_every_cpu():
    cpus = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    backend = InterpreterBackend()
    assert backend.effective_n_jobs(-1) == cpus
    assert backend.effective_n_jobs(-2) == max(cpus - 1, 1)
    with pytest.raises(ValueError):
        backend.effective_n_jobs(0)
    with parallel_config(backend="multigil"):
        assert joblib.effective_n_jobs(-1) == cpus
        out = Parallel(n_jobs=-1)(delayed(tasks.interpreter_id)(i) for i in range(10))
    if cpus > 1:
        assert all(i != 0 for i in out)


def test_one_job_runs_in_the_calling_thread():
    # joblib runs n_jobs=1 sequentially, whatever the backend.
    assert run(1, (delayed(tasks.interpreter_id)(i) for i in range(3))) == [0, 0, 0]


def test_interpreters_stay_warm_between_calls():
    # New interpreters get ever higher ids: a second pool would show none of
    # the first call's.
    first = set(run(2, (delayed(tasks.interpreter_id)(i) for i in range(40))))
    second = set(run(2, (delayed(tasks.interpreter_id)(i) for i in range(40))))
    assert min(second) <= max(first)


def test_nested_parallel_in_threads():
    # An outer Parallel on threads whose calls each run a Parallel on
    # interpreters: both share the warm pool.
    out = Parallel(n_jobs=2, backend="threading")(delayed(tasks.inner_parallel)(n) for n in range(1, 7))
    assert out == [[i * i for i in range(n)] for n in range(1, 7)]


def test_parallel_inside_an_interpreter_is_an_import_error():
    # joblib itself does not import in an isolated interpreter (faulthandler
    # refuses; on 3.12 ctypes first): nest the other way round (above).
    with pytest.raises(ImportError, match="subinterpreters|isolated interpreter"):
        run(2, [delayed(tasks.call_joblib)(3), delayed(tasks.call_joblib)(3)])


def test_concurrent_parallel_calls_from_threads():
    results: dict[int, list[int]] = {}

    def call(k: int) -> None:
        results[k] = run(2, (delayed(tasks.add)(i, k) for i in range(500)))

    threads = [threading.Thread(target=call, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {k: [i + k for i in range(500)] for k in range(4)}


def test_pool_options_reach_the_executor():
    with parallel_config(backend="multigil", shared={"ANSWER": 42}):
        out = Parallel(n_jobs=2)(delayed(tasks.main_value)("ANSWER") for _ in range(4))
    assert out == [42] * 4
    with parallel_config(backend="multigil", max_tasks_per_worker="x"):
        with pytest.raises(TypeError, match="max_tasks_per_worker"):
            Parallel(n_jobs=2)(delayed(tasks.square)(i) for i in range(2))


def test_function_whose_module_refuses_interpreters_fails_cleanly():
    # Its module imports numpy: the batch fails with the import guard's
    # ImportError (it does not hang), and the pool goes on.
    import numpy_user

    with pytest.raises(ImportError, match="numpy"):
        run(2, (delayed(numpy_user.total)([i, 1]) for i in range(4)))
    assert run(2, (delayed(tasks.square)(i) for i in range(4))) == [0, 1, 4, 9]


def test_fallback_runs_refusing_calls_in_processes():
    # parallel_config passes fallback="process" on to the pool: batches that
    # need numpy (their function or their arguments) run in its processes,
    # the others in interpreters, with results, order and errors as ever.
    import numpy as np
    import numpy_user

    with parallel_config(backend="multigil", fallback="process"):
        assert Parallel(n_jobs=2)(delayed(numpy_user.total)([i, 1]) for i in range(10)) == \
            list(range(1, 11))
        assert Parallel(n_jobs=2)(delayed(len)(np.arange(i)) for i in range(6)) == list(range(6))
        places = Parallel(n_jobs=2)(delayed(numpy_user.place)(i) for i in range(4))
        assert all(pid != os.getpid() and interp == 0 for pid, interp in places)
        assert all(interp != 0 for interp, _, _ in
                   Parallel(n_jobs=2)(delayed(tasks.where)(i) for i in range(4)))
        unordered = Parallel(n_jobs=2, return_as="generator_unordered")(
            delayed(numpy_user.total)([i]) for i in range(8))
        assert sorted(unordered) == list(range(8))
        with pytest.raises(TypeError, match="unsupported operand") as info:
            Parallel(n_jobs=2)(delayed(numpy_user.total)([i, "x"]) for i in range(4))
        assert "numpy_user.py" in info.value.__cause__.excinfo.errdisplay


def test_argument_that_cannot_cross():
    lock = threading.Lock()
    with pytest.raises(multigil.NotShareableError, match="lock"):
        run(2, [delayed(tasks.square)(1), delayed(id)(lock)])


def test_shutdown_closes_the_kept_interpreters():
    from multigil import interpreters

    run(2, (delayed(tasks.square)(i) for i in range(4)))
    before = len(interpreters.list_all())
    multigil.joblib.shutdown()
    assert len(interpreters.list_all()) <= before - 2
    assert run(2, (delayed(tasks.square)(i) for i in range(4))) == [0, 1, 4, 9]


def test_functions_of_a_script_run_as_main(tmp_path: Path):
    script = tmp_path / "joblib_script.py"
    script.write_text(textwrap.dedent("""
        from joblib import Parallel, delayed, parallel_config
        import multigil.joblib
        from multigil import interpreters

        def collatz(n):
            steps = 0
            while n != 1:
                n = 3 * n + 1 if n % 2 else n // 2
                steps += 1
            return interpreters.get_current().id, steps

        if __name__ == "__main__":
            offset = 1000
            with parallel_config(backend="multigil"):
                out = Parallel(n_jobs=2)(delayed(collatz)(n) for n in range(1, 200))
                shifted = Parallel(n_jobs=2, return_as="generator_unordered")(
                    delayed(lambda v: v + offset)(v) for v in range(10))
                shifted = sorted(shifted)
            assert all(i != 0 for i, _ in out)
            print("steps", sum(s for _, s in out))
            print("shifted", shifted)
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=90, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = 0
    for n in range(1, 200):
        while n != 1:
            n = 3 * n + 1 if n % 2 else n // 2
            expected += 1
    assert f"steps {expected}" in proc.stdout
    assert f"shifted {list(range(1000, 1010))}" in proc.stdout
    assert "Fatal Python error" not in proc.stderr
