"""InterpreterPoolExecutor with script code, as people bring it from
``ProcessPoolExecutor``: every test runs a real script in a subprocess (the
script is ``__main__`` there), each with a timeout.

* failures on the worker side (an argument, the function or a result that
  cannot be rebuilt) complete their future at once, say at which stage the
  task failed, and leave the pool working;
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
    path = [str(TESTS)] + [p for p in sys.path if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=tmp_path)


def report(proc: subprocess.CompletedProcess[str]) -> Any:
    """The JSON the script printed last, once it exited cleanly."""
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# What the scripts below share: how they describe a future's failure.
DESCRIBE = """
import json

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

class Unloadable:
    # pickles, but unpickling it raises, in any interpreter
    def __reduce__(self):
        return (int, ("x",))

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

class Unloadable:
    def __reduce__(self):
        return (int, ("x",))

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

class Unloadable:
    def __reduce__(self):
        return (int, ("x",))

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
