"""InterpreterPoolExecutor with script code, as people bring it from
``ProcessPoolExecutor``: every test runs a real script in a subprocess (the
script is ``__main__`` there), each with a timeout.

* failures on the worker side (an argument, the function or a result that
  cannot be rebuilt) complete their future at once, say at which stage the
  task failed, and leave the pool working;
* functions of ``__main__`` (and lambdas, closures, classes of the script) run
  in the worker's own ``__main__``: they see what the initializer,
  ``shared=`` or an earlier task bound there; the main interpreter's globals
  never change; the script is never run again;
* they are sent once (by content) and kept rebuilt in each worker, big
  globals included, and every importable callable crosses by reference;
* their tracebacks show the script's file, line and source;
* inside a worker, ``threading.current_thread()`` has the worker's name, and
  nothing is printed at shutdown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(240)

TIMEOUT = 180
TESTS = Path(__file__).resolve().parent


def run_script(tmp_path: Path, source: str, name: str = "script.py",
               timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run `source` as the file `name` (its __main__), with the tests' modules
    importable; fails the test if it does not end in time."""
    script = tmp_path / name
    script.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=timeout, env=script_env(), cwd=tmp_path)


def script_env() -> dict[str, str]:
    """The environment a test's script runs in: the tests' modules importable."""
    path = [str(TESTS)] + [p for p in sys.path if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path))


def report(proc: subprocess.CompletedProcess[str]) -> Any:
    """The JSON the script printed last, once it exited cleanly."""
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# What the scripts below share: an argument that cannot be rebuilt, and how
# they describe a future's failure.
DESCRIBE = """
import json

class Unloadable:
    # pickles, but unpickling it raises, in any interpreter
    def __reduce__(self):
        return (int, ("x",))

def describe(fut, timeout=60):
    exc = fut.exception(timeout)      # raises TimeoutError if the future hangs
    if exc is None:
        return {"result": repr(fut.result())}
    cause = exc.__cause__
    return {"type": type(exc).__name__, "message": str(exc), "stage": fut.stage,
            "cause": None if cause is None else type(cause).__name__,
            "cause_is_import_error": isinstance(cause, ImportError)}

def failure(run):
    try:
        run()
    except Exception as exc:
        return {"type": type(exc).__name__, "message": str(exc).partition("\\n")[0]}
    return None
"""


# ------------------------------------------------- failures on the worker side --

def test_arguments_that_cannot_be_rebuilt_fail_their_future_at_once(tmp_path: Path) -> None:
    proc = run_script(tmp_path, DESCRIBE + """
import concurrent.futures as cf
import numpy as np
from multigil import InterpreterPoolExecutor

def ident(x):
    return x

if __name__ == "__main__":
    out = {}
    with InterpreterPoolExecutor(2) as pool:
        array = pool.submit(len, np.arange(5.0))
        bad = pool.submit(ident, Unloadable())
        kw = pool.submit(ident, x=Unloadable())
        done, not_done = cf.wait([array, bad, kw], timeout=60)
        out["wait"] = [len(done), len(not_done)]
        out["array"] = describe(array)
        out["bad"] = describe(bad)
        out["kw"] = describe(kw)
        out["after"] = pool.submit(sum, [1, 2, 3]).result(60)
    print(json.dumps(out))
""")
    out = report(proc)
    assert out["wait"] == [3, 0]
    for key in ("array", "bad", "kw"):
        got = out[key]
        assert got["type"] == "NotShareableError", got
        assert got["message"].startswith("args not shareable"), got
        assert got["stage"] == "arguments"
    # numpy refuses isolated interpreters: the import guard's error is the cause
    assert out["array"]["cause"] == "InterpreterImportError"
    assert out["array"]["cause_is_import_error"]
    assert "numpy" in out["array"]["message"]
    assert out["bad"]["cause"] == "ValueError" and "invalid literal" in out["bad"]["message"]
    assert out["after"] == 6
    # nothing printed behind the user's back
    assert "Traceback" not in proc.stderr, proc.stderr


def test_each_stage_is_reported(tmp_path: Path) -> None:
    proc = run_script(tmp_path, DESCRIBE + """
import threading
import numpy_user                    # imports numpy: its functions cannot be rebuilt
from multigil import InterpreterPoolExecutor

def make_unloadable():
    return Unloadable()

def make_lock():
    return threading.Lock()

def boom():
    raise KeyError("boom")

if __name__ == "__main__":
    out = {}
    with InterpreterPoolExecutor(2) as pool:
        out["ok"] = describe(pool.submit(abs, -1))
        out["function"] = describe(pool.submit(numpy_user.total, [1, 2]))
        out["arguments"] = describe(pool.submit(abs, Unloadable()))
        out["arguments_here"] = describe(pool.submit(abs, threading.Lock()))
        lock = threading.Lock()
        out["function_here"] = describe(pool.submit(lambda: lock))
        out["call"] = describe(pool.submit(boom))
        out["result"] = describe(pool.submit(make_lock))
        out["result_here"] = describe(pool.submit(make_unloadable))
        out["after"] = pool.submit(abs, -7).result(60)
    print(json.dumps(out))
""")
    out = report(proc)
    assert out["ok"] == {"result": "1"}
    stages = {k: v["stage"] for k, v in out.items() if isinstance(v, dict) and "stage" in v}
    assert stages == {"function": "function", "arguments": "arguments",
                      "arguments_here": "arguments", "function_here": "function",
                      "call": "call", "result": "result", "result_here": "result"}
    # the function's module refuses: the import guard's ImportError itself
    assert out["function"]["type"] == "InterpreterImportError"
    assert "numpy" in out["function"]["message"]
    assert out["call"]["type"] == "KeyError"
    for key in ("result", "result_here"):
        assert out[key]["type"] == "NotShareableError"
        assert out[key]["message"].startswith("result not shareable")
    assert "lock" in out["result"]["message"]
    assert out["result_here"]["cause"] == "ValueError"
    assert out["after"] == 7


def test_map_fails_at_the_item_that_cannot_be_rebuilt(tmp_path: Path) -> None:
    # One bad item among many, in one chunk or several, ordered or not, with
    # and without buffersize, in map and amap: the items before it give their
    # results, the map raises at it (stdlib semantics), and nothing hangs.
    proc = run_script(tmp_path, DESCRIBE + """
import asyncio
import threading
import numpy as np
from multigil import InterpreterPoolExecutor

def ident(x):
    return x if isinstance(x, int) else -1

def collect(it):
    got = []
    try:
        for r in it:
            got.append(r)
    except Exception as exc:
        return got, type(exc).__name__, str(exc).partition("\\n")[0]
    return got, None, None

async def acollect(ait):
    got = []
    try:
        async for r in ait:
            got.append(r)
    except Exception as exc:
        return got, type(exc).__name__, str(exc).partition("\\n")[0]
    return got, None, None

if __name__ == "__main__":
    out = {}
    with InterpreterPoolExecutor(2) as pool:
        for bad_name, bad in [("unloadable", Unloadable()), ("array", np.arange(3)),
                              ("lock", threading.Lock())]:
            items = list(range(10)) + [bad] + list(range(10, 20))
            for chunksize in (None, 1, 100):
                key = f"{bad_name}-map-{chunksize}"
                out[key] = collect(pool.map(ident, items, chunksize=chunksize))
            out[f"{bad_name}-buffered"] = collect(pool.map(ident, iter(items), buffersize=8))
            unordered = collect(pool.map(ident, items, ordered=False))
            out[f"{bad_name}-unordered"] = [sorted(unordered[0]), unordered[1], unordered[2]]
            out[f"{bad_name}-amap"] = asyncio.run(acollect(pool.amap(ident, items)))
        out["after"] = list(pool.map(ident, range(5)))
    print(json.dumps(out))
""")
    out = report(proc)
    for bad in ("unloadable", "array", "lock"):
        for how in ("map-None", "map-1", "map-100", "buffered", "amap"):
            got, exc_type, message = out[f"{bad}-{how}"]
            assert got == list(range(10)), (bad, how, got)
            assert exc_type == "NotShareableError", (bad, how, message)
            if bad != "lock":   # the lock fails in the sender, with its own message
                assert message.startswith("args not shareable"), message
        got, exc_type, _ = out[f"{bad}-unordered"]
        assert exc_type == "NotShareableError"
        assert set(got) <= set(range(20))
    assert out["after"] == [0, 1, 2, 3, 4]


# --------------------------------------------- functions of __main__ --

def test_main_functions_see_the_workers_main(tmp_path: Path) -> None:
    proc = run_script(tmp_path, """
import json, os
from multigil import InterpreterPoolExecutor, interpreters

with open("runs.txt", "a") as f:     # top-level code: must run once, here only
    f.write("run\\n")

CONFIG = "from the script"
PREFIX = "p"

def init(value):
    global CONFIG
    CONFIG = value

def read_config():
    return CONFIG

def read_shared():
    return PREFIX + SHARED          # SHARED is not a global of the script at all

def remember(value):
    global EARLIER
    EARLIER = value

def recall():
    return EARLIER

if __name__ == "__main__":
    out = {}
    with InterpreterPoolExecutor(1, initializer=init, initargs=("from the initializer",),
                                 shared={"SHARED": "-shared", "PREFIX": "worker-"}) as pool:
        out["function"] = pool.submit(read_config).result(60)
        out["lambda"] = pool.submit(lambda: CONFIG).result(60)
        out["shared"] = pool.submit(read_shared).result(60)
        out["shared_lambda"] = pool.submit(lambda: SHARED).result(60)
        out["map"] = list(pool.map(lambda i: f"{CONFIG}/{i}", range(3)))
        pool.submit(remember, 42).result(60)
        out["earlier"] = pool.submit(recall).result(60)
        out["earlier_lambda"] = pool.submit(lambda: EARLIER).result(60)
    with InterpreterPoolExecutor(1, initializer="CONFIG = 'from a string'") as pool:
        out["init_string"] = pool.submit(read_config).result(60)
    with interpreters.create() as interp:
        interp.prepare_main(CONFIG="prepared")
        out["call"] = interp.call(read_config)
        interp.exec("PREFIX = 'exec-'; SHARED = 'x'")
        out["call_exec"] = interp.call(read_shared)
    out["main_config"] = CONFIG
    out["main_has_earlier"] = "EARLIER" in globals()
    out["main_prefix"] = PREFIX
    out["runs"] = open("runs.txt").read().count("run")
    print(json.dumps(out))
""")
    out = report(proc)
    assert out == {
        "function": "from the initializer", "lambda": "from the initializer",
        "shared": "worker--shared", "shared_lambda": "-shared",
        "map": ["from the initializer/0", "from the initializer/1", "from the initializer/2"],
        "earlier": 42, "earlier_lambda": 42, "init_string": "from a string",
        "call": "prepared", "call_exec": "exec-x",
        "main_config": "from the script", "main_has_earlier": False, "main_prefix": "p",
        "runs": 1,
    }


def test_recursion_closures_and_classes_of_main(tmp_path: Path) -> None:
    proc = run_script(tmp_path, """
import json
from multigil import InterpreterPoolExecutor

SCALE = 10

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

def is_even(n):
    return True if n == 0 else is_odd(n - 1)

def is_odd(n):
    return False if n == 0 else is_even(n - 1)

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def scaled(self):
        return Point(self.x * SCALE, self.y * SCALE)
    @classmethod
    def origin(cls):
        return cls(0, 0)

def scale(p):
    return p.scaled(), isinstance(p, Point)

def set_scale(value):
    global SCALE
    SCALE = value

def make_counter(start):
    count = start
    def bump(step):
        nonlocal count
        count += step
        return count
    return bump

def main():
    out = {}
    with InterpreterPoolExecutor(1, initializer=set_scale, initargs=(3,)) as pool:
        out["fib"] = pool.submit(fib, 20).result(60)
        out["even"] = pool.submit(is_even, 11).result(60)
        p, same_class = pool.submit(scale, Point(1, 2)).result(60)
        out["point"] = [type(p) is Point, same_class, p.x, p.y]
        origin = pool.submit(Point.origin).result(60)
        out["origin"] = [type(origin) is Point, origin.x]
        offset = 100
        out["closure"] = pool.submit(lambda x: x + offset, 1).result(60)
        offset = 200                       # a closure's new contents are sent
        out["closure_after"] = pool.submit(lambda x: x + offset, 1).result(60)
        adders = [(lambda k: lambda x: x + k)(k) for k in range(4)]
        out["adders"] = [pool.submit(a, 10).result(60) for a in adders]
        out["counter"] = pool.submit(make_counter(5), 2).result(60)
    print(json.dumps(out))

if __name__ == "__main__":
    main()
""")
    out = report(proc)
    assert out == {"fib": 6765, "even": False, "point": [True, True, 3, 6],
                   "origin": [True, 0], "closure": 101, "closure_after": 201,
                   "adders": [10, 11, 12, 13], "counter": 7}


def test_main_functions_are_sent_once_and_kept_in_each_worker(tmp_path: Path) -> None:
    # A global that counts how often it is pickled (in the script) and
    # unpickled (in the worker): the functions that use it go once each way,
    # whatever the number of tasks; a big global costs no more.
    proc = run_script(tmp_path, """
import json
from multigil import InterpreterPoolExecutor

PICKLED = 0

def unpickled():
    import __main__
    __main__.UNPICKLED = getattr(__main__, "UNPICKLED", 0) + 1
    return Tracker()

class Tracker:
    def __reduce__(self):
        global PICKLED
        PICKLED += 1
        return (unpickled, ())

TRACKER = Tracker()
BIG = {i: str(i) for i in range(200_000)}

def task(i):
    TRACKER
    import __main__
    return __main__.UNPICKLED, len(BIG) + i

if __name__ == "__main__":
    out = {}
    with InterpreterPoolExecutor(1) as pool:
        out["submit"] = [pool.submit(task, i).result(60) for i in range(30)][-1]
        out["pickled_submit"] = PICKLED
        out["map"] = list(pool.map(task, range(100), chunksize=1))[-1]
        # a new lambda object each time, same content: still sent once
        out["lambdas"] = [pool.submit(lambda: (TRACKER, 1)[1]).result(60) for _ in range(20)]
        out["pickled"] = PICKLED
        out["unpickled"] = pool.submit(lambda: UNPICKLED).result(60)
    print(json.dumps(out))
""")
    out = report(proc)
    assert out["submit"] == [1, 200_029]
    assert out["pickled_submit"] == 1
    assert out["map"] == [1, 200_099]
    assert out["lambdas"] == [1] * 20
    assert out["pickled"] == 2          # task, and the lambda
    assert out["unpickled"] == 2


def test_tracebacks_of_main_functions_show_the_script(tmp_path: Path) -> None:
    proc = run_script(tmp_path, """
import json
from multigil import InterpreterPoolExecutor

def inner(x):
    return 1 / x                       # the failing line

def outer(x):
    return inner(x) + 1

if __name__ == "__main__":
    out = {}
    with InterpreterPoolExecutor(1) as pool:
        for name, run in [("submit", lambda: pool.submit(outer, 0).result(60)),
                          ("map", lambda: list(pool.map(outer, [1, 0, 2]))),
                          ("lambda", lambda: pool.submit(lambda x: 1 // x, 0).result(60))]:
            try:
                run()
            except ZeroDivisionError as exc:
                out[name] = exc.__cause__.excinfo.errdisplay
    print(json.dumps(out))
""", name="tb_script.py")
    out = report(proc)
    script = str(tmp_path / "tb_script.py")
    for name in ("submit", "map"):
        tb = out[name]
        assert f'File "{script}", line 9, in outer' in tb, tb
        assert "return inner(x) + 1" in tb
        assert f'File "{script}", line 6, in inner' in tb
        assert "return 1 / x                       # the failing line" in tb
        assert "<dynamic-code>" not in tb
    assert f'File "{script}", line 16, in <lambda>' in out["lambda"], out["lambda"]
    assert "pool.submit(lambda x: 1 // x, 0)" in out["lambda"]


# ------------------------------------------- callables by reference --

def test_importable_callables_cross_by_reference_and_are_kept(tmp_path: Path) -> None:
    # Functions, builtins, classes, methods of module-level classes and
    # functools.partial of those travel as references (no cloudpickle), under
    # one token however often they are sent -- also a partial or a class
    # method made anew each time -- and each worker rebuilds them once.
    proc = run_script(tmp_path, """
import functools, json, operator
import executor_tasks as tasks
from multigil import InterpreterPoolExecutor, _pickler

tokens = iter(range(1000, 2000))

def ref(fn):
    by_object, token, payload = _pickler.function_ref(fn, next(tokens))
    return by_object, token, bytes(payload)

def crossing(make):
    # A callable kept by object is never asked for again; one kept by
    # content comes back under its first token.
    first, second = ref(make()), ref(make())
    return {"by_reference": b"cloudpickle" not in first[2] and b"_pickler" not in first[2],
            "same_token": bool(first[0]) or first[1] == second[1]}

if __name__ == "__main__":
    out = {}
    cases = {
        "function": lambda: tasks.square, "builtin": lambda: abs, "class": lambda: dict,
        "method_descriptor": lambda: str.upper, "classmethod": lambda: tasks.Maker.make,
        "staticmethod": lambda: tasks.Maker.twice, "operator": lambda: operator.add,
        "partial": lambda: functools.partial(tasks.add, 1),
        "partial_kw": lambda: functools.partial(tasks.kw, 1, b=2),
    }
    for name, make in cases.items():
        out[name] = crossing(make)
    with InterpreterPoolExecutor(1) as pool:
        out["results"] = [
            pool.submit(str.upper, "a").result(60), pool.submit(tasks.Maker.make, 2).result(60),
            pool.submit(functools.partial(tasks.add, 1), 2).result(60),
            pool.submit(dict, a=1).result(60), list(pool.map(functools.partial(tasks.kw, 1, b=2), [])),
            pool.submit(tasks.Maker.twice, 4).result(60)]
    print(json.dumps(out))
""")
    out = report(proc)
    results = out.pop("results")
    assert results == ["A", ["made", 2], 3, {"a": 1}, [], 8]
    for name, got in out.items():
        assert got == {"by_reference": True, "same_token": True}, name


def test_callables_kept_by_content_are_sent_again_when_they_change(tmp_path: Path) -> None:
    proc = run_script(tmp_path, """
import functools, json
import executor_tasks as tasks
from multigil import InterpreterPoolExecutor

def scaled(x, factor=2):
    return x * factor

if __name__ == "__main__":
    out = []
    with InterpreterPoolExecutor(1) as pool:
        out.append(pool.submit(scaled, 3).result(60))
        scaled.__defaults__ = (10,)
        out.append(pool.submit(scaled, 3).result(60))
        scaled.__code__ = (lambda x, factor=2: -x * factor).__code__
        out.append(pool.submit(scaled, 3).result(60))
        p = functools.partial(tasks.kw, 1, b=2)
        out.append(pool.submit(p).result(60))
        p.keywords["c"] = 3
        out.append(pool.submit(p).result(60))
        p.keywords["b"] = 20
        out.append(pool.submit(p).result(60))
        q = functools.partial(tasks.identity, [1])
        out.append(pool.submit(q).result(60))
        q.args[0].append(2)
        out.append(pool.submit(q).result(60))
    print(json.dumps(out))
""")
    assert report(proc) == [6, 30, -30, [1, 2, 0], [1, 2, 3], [1, 20, 3], [1], [1, 2]]


def test_callables_holding_what_changes_in_place_are_sent_as_they_are_now(
        tmp_path: Path) -> None:
    # A closure's dict, a default list, a partial of a closure and a global of
    # a module's lambda change in place: the same objects, new content.  Each
    # task must see the content of its submit.  (A global of __main__, such
    # as a function's own attribute read through its name, is the worker's
    # once bound there, as in a process: see test_main_functions_see_the_workers_main.)
    (tmp_path / "settings_mod.py").write_text(textwrap.dedent("""
        SETTINGS = {"k": 1}
        def make():
            return lambda x: x * SETTINGS["k"]
    """))
    proc = run_script(tmp_path, """
import functools, json
import settings_mod
from multigil import InterpreterPoolExecutor

def make():
    cfg = {"k": 1}
    def f(x):
        return x * cfg["k"]
    return f, cfg

def g(x, acc=[1]):
    return x * len(acc)

if __name__ == "__main__":
    f, cfg = make()
    p = functools.partial(f, 3)
    m = settings_mod.make()
    out = []
    with InterpreterPoolExecutor(1) as pool:
        def twice(fn, change):
            out.append(pool.submit(fn, 2).result(60))
            change()
            out.append(pool.submit(fn, 2).result(60))
        twice(f, lambda: cfg.update(k=10))
        twice(g, lambda: g.__defaults__[0].append(1))
        out.append(pool.submit(p).result(60))
        cfg["k"] = 100
        out.append(pool.submit(p).result(60))
        twice(m, lambda: settings_mod.SETTINGS.update(k=7))
    with InterpreterPoolExecutor(1) as pool:
        out.append(pool.submit(m, 2).result(60))
    print(json.dumps(out))
""")
    assert report(proc) == [2, 20, 2, 4, 30, 300, 2, 14, 14]


# ------------------------------------------------ the worker thread --

def test_worker_threads_are_named_and_exit_quietly(tmp_path: Path) -> None:
    proc = run_script(tmp_path, """
import json, logging, threading
from multigil import InterpreterPoolExecutor

def who():
    import logging, threading
    logging.basicConfig(level=logging.INFO, format="%(threadName)s: %(message)s")
    logging.getLogger("task").info("logged from a task")
    t = threading.current_thread()
    return t.name, isinstance(t, threading.Thread), t.is_alive(), t.ident == threading.get_ident()

def main_side_name():
    return threading.current_thread().name

if __name__ == "__main__":
    with InterpreterPoolExecutor(2, thread_name_prefix="worker") as pool:
        got = [pool.submit(who).result(60) for _ in range(4)]
        fut = pool.submit(who)
        names = set()
        fut.add_done_callback(lambda f: names.add(main_side_name()))
        got.append(fut.result(60))
    print(json.dumps({"got": got, "main_side": sorted(names)}))
""")
    out = report(proc)
    assert out["got"], out
    for name, is_thread, alive, same in out["got"]:
        assert name in ("worker_0", "worker_1"), name
        assert is_thread and alive and same
    assert set(out["main_side"]) <= {"worker_0", "worker_1"}
    assert "worker_0: logged from a task" in proc.stderr or \
        "worker_1: logged from a task" in proc.stderr, proc.stderr
    assert "Exception ignored" not in proc.stderr, proc.stderr
    assert "Dummy" not in proc.stderr, proc.stderr
