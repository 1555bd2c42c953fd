"""multigil._core edge cases: failures and misuse must raise, never crash."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest

import helpers
from multigil import _core, interpreters
from multigil._errors import InterpreterError

pytestmark = pytest.mark.timeout(120)


def run_script(source: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(source)], capture_output=True,
                          text=True, timeout=100, env=env)


def test_bootstrap_failure_after_importing_core_is_an_error():
    # The failed interpreter's _core module is freed while it ends: its
    # registry entry must outlive that.
    with pytest.raises(InterpreterError, match="boom"):
        _core.create("import multigil._core\nraise RuntimeError('boom')")
    with interpreters.create() as it:
        assert it.call(helpers.add, 1, 2) == 3


def test_interpreter_not_created_by_multigil_is_refused():
    """A cached thread state of ours would make its creator's destroy abort
    ("not the last thread"): multigil does not enter such interpreters."""
    proc = run_script("""
        try:
            import _interpreters as std
        except ImportError:
            import _xxsubinterpreters as std
        from multigil import _core
        from multigil._errors import InterpreterError
        fid = std.create()
        std.run_string(fid, "import multigil._core") if hasattr(std, "run_string") else std.exec(fid, "import multigil._core")
        try:
            _core.call(fid, len, ((1, 2, 3),), None)
        except InterpreterError as exc:
            print("refused:", exc)
        std.destroy(fid)
        print("destroyed")
    """)
    assert proc.returncode == 0, proc.stderr
    assert "refused: interpreter" in proc.stdout and "destroyed" in proc.stdout


def test_worker_cannot_be_reinitialised_while_running():
    with interpreters.create() as it:
        q = _core.Queue()
        done: list[object] = []
        finished = threading.Event()

        def on_done(tid: int, ok: object, value: object, stage: object) -> None:
            done.append(value)
            finished.set()

        worker = _core.Worker(it.id, q, None, on_done)
        t = threading.Thread(target=worker.run)
        t.start()
        _core.submit_task(q, 1, helpers.add, (2, 3), None, False)
        assert finished.wait(60)               # run() is in its loop now
        with pytest.raises(RuntimeError, match="running"):
            worker.__init__(it.id, _core.Queue(), None, print)
        q.close()
        t.join(60)
        assert done == [5]


def test_submit_task_checks_the_task_id():
    q = _core.Queue()
    with pytest.raises(TypeError):
        _core.submit_task(q, "one", helpers.add, (1, 2), None, False)
    with pytest.raises(ValueError):
        _core.submit_task(q, 0, helpers.add, (1, 2), None, False)
    assert q.qsize() == 0


NO_CORE = r"interpreter \d+ cannot run code sent by multigil: multigil._core is not imported there"


def test_every_entry_point_says_the_same_when_the_target_has_no_core():
    # One condition, one message: call, exec, set_main_attrs and a worker all
    # run code through the same path (call.c: mg_run_in / mg_no_core).
    bare = _core.create("pass")
    try:
        with pytest.raises(InterpreterError, match=NO_CORE):
            _core.call(bare, helpers.add, (1, 2), None)
        with pytest.raises(InterpreterError, match=NO_CORE):
            _core.exec(bare, "x = 1")
        with pytest.raises(InterpreterError, match=NO_CORE):
            _core.set_main_attrs(bare, {"x": 1})
        with pytest.raises(InterpreterError, match=NO_CORE):
            _core.Worker(bare, _core.Queue(), None, print).run()
    finally:
        _core.destroy(bare)


def test_worker_refuses_its_own_interpreter():
    worker = _core.Worker(_core.get_current(), _core.Queue(), None, print)
    with pytest.raises(InterpreterError, match="own interpreter"):
        worker.run()


def test_submit_task_checks_the_call_it_builds():
    # A task the worker could not call (args not a tuple) fails at submit, in
    # the caller, instead of in the worker.
    q = _core.Queue()
    with pytest.raises(TypeError, match="arguments of a call must be a tuple, not list"):
        _core.submit_task(q, 1, helpers.add, [1, 2], None, False)
    with pytest.raises(TypeError, match="keyword arguments of a call must be a dict or None"):
        _core.submit_task(q, 1, helpers.add, (1, 2), [("a", 1)], False)
    assert q.qsize() == 0


def test_worker_skips_items_that_name_no_task_and_fails_bad_payloads(interps) -> None:  # type: ignore[no-untyped-def]
    (interp,) = interps(1)
    work, done = _core.Queue(), []
    scratch = _core.Queue()
    _core.submit_task(scratch, 1, helpers.add, (2, 3), None, False)
    task = scratch.get_nowait()
    work.put(("one", *task[1:]))                      # the task id is not an int
    work.put((2, *task[1:4], [2, 3], None))           # args not a tuple
    work.put((3, *task[1:]))
    work.close()
    worker = _core.Worker(interp.id, work, None,
                          lambda tid, ok, value, stage: done.append((tid, ok, value, stage)))
    assert worker.run() == "closed"
    # The first names no task: reported and skipped.  The second names its
    # task, whose payload is wrong: that task fails, at its arguments.
    assert [(tid, ok, stage) for tid, ok, _, stage in done] == [
        (2, False, "arguments"), (3, True, None)]
    assert "must be a tuple" in done[0][2][3]
    assert done[1][2] == 5
