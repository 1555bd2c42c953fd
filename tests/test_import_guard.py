"""The import guard of every interpreter multigil creates (multigil._subinit).

What a user sees when a C extension refuses isolated interpreters: an
``InterpreterImportError`` whose first line is multigil's explanation, naming
the user's module that imported it, with the extension's (or its package's)
own error as the ``__cause__``; and that a first import of such a module in
several fresh interpreters at once never aborts the process.

Behaviour of script code is tested from real scripts run in subprocesses
(each under a timeout), with the real numpy, PyYAML and msgpack of the test
extra.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import multigil
from multigil import InterpreterImportError

SCRIPT_TIMEOUT = 120


def run_script(folder: Path, source: str, timeout: float = SCRIPT_TIMEOUT,
               **files: str) -> subprocess.CompletedProcess[str]:
    """Run *source* as ``main.py`` in *folder* (beside *files*), as a user would."""
    for name, text in files.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(text))
    script = folder / "main.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, str(script)], cwd=folder, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# What the interpreter reports about the error it caught: plain data, which
# crosses back to the script.
DESCRIBE = """
    import importlib

    def chain(exc):
        links = []
        while exc is not None and len(links) < 10:
            links.append(exc)
            exc = exc.__cause__ if exc.__cause__ is not None else exc.__context__
        return links

    def describe(module):
        import multigil
        try:
            importlib.import_module(module)
        except ImportError as exc:
            links = chain(exc)
            guard = [link for link in links if isinstance(link, multigil.InterpreterImportError)]
            innermost = guard[-1] if guard else None
            return {
                "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                "marked": isinstance(exc, multigil.InterpreterImportError),
                "message": str(exc),
                "name": exc.name,
                "importer": getattr(exc, "importer", None),
                "cause_type": type(exc.__cause__).__qualname__,
                "cause_marked": isinstance(exc.__cause__, multigil.InterpreterImportError),
                "cause": str(exc.__cause__),
                "innermost": str(innermost) if innermost else None,
                "innermost_cause": str(innermost.__cause__) if innermost else None,
            }
        return None
"""


@pytest.mark.timeout(180)
def test_numpy_through_a_user_module(tmp_path: Path) -> None:
    """A script's interpreter imports mymodule, whose line 3 imports numpy."""
    proc = run_script(tmp_path, """
        import json
        import multigil
        from multigil import interpreters
        import describe

        with interpreters.create() as interp:
            inside = interp.call(describe.describe, "mymodule")
            try:
                interp.call(describe.importlib.import_module, "mymodule")
            except interpreters.ExecutionFailed as exc:
                caller = {"type": exc.excinfo.type.__qualname__,
                          "first": exc.excinfo.msg.splitlines()[0]}
        with multigil.InterpreterPoolExecutor(1) as pool:
            try:
                pool.submit(describe.importlib.import_module, "mymodule").result()
            except multigil.InterpreterImportError as exc:
                pooled = {"name": exc.name, "importer": exc.importer,
                          "first": str(exc).splitlines()[0]}
        print(json.dumps({"inside": inside, "caller": caller, "pooled": pooled}))
        with interpreters.create() as interp:
            interp.exec("import mymodule")  # uncaught: the traceback a user sees
        """, describe=DESCRIBE, mymodule="import os\n\nimport numpy\n")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    inside: dict[str, Any] = data["inside"]
    first, *rest = inside["message"].splitlines()
    # multigil's explanation comes first: which module, why ...
    assert first.startswith("numpy cannot be imported in an isolated interpreter: its C "
                            f"extension {inside['name']} does not support isolated interpreters")
    assert inside["name"].startswith("numpy.") and inside["name"].endswith("_multiarray_umath")
    assert inside["marked"] and inside["type"] == "multigil._errors.InterpreterImportError"
    # ... who imported it ...
    assert inside["importer"] == "mymodule"
    assert f"imported by: mymodule ({tmp_path / 'mymodule.py'} line 3)" in rest[0]
    # ... and what to do.
    text = " ".join(rest)
    assert 'InterpreterPoolExecutor(fallback="process")' in text
    assert "`multigil check mymodule`" in text
    # numpy's own error (a page of advice) is the cause, not in front ...
    assert inside["cause_type"] == "ImportError" and not inside["cause_marked"]
    assert "numpy" in inside["cause"].lower()
    assert "cannot be imported in an isolated interpreter" not in first.partition(":")[2]
    # ... and below it the guard's error for the extension, caused by CPython's.
    assert inside["innermost"].startswith(f"{inside['name']} cannot be imported")
    assert "subinterpreters" in inside["innermost_cause"]
    # The caller of Interpreter.call gets ExecutionFailed describing it (as
    # PEP 734 says); an executor's caller gets the same type, with its
    # attributes.
    assert data["caller"] == {"type": "InterpreterImportError", "first": first}
    assert data["pooled"] == {"name": inside["name"], "importer": "mymodule", "first": first}
    # Uncaught, the last line of the traceback is multigil's explanation.
    error_lines = [line for line in proc.stderr.splitlines() if "InterpreterImportError:" in line]
    assert error_lines[-1].startswith("multigil._errors.InterpreterImportError: numpy cannot be "
                                      "imported in an isolated interpreter")
    assert "Fatal Python error" not in proc.stderr


def describe_in_interpreter(folder: Path, *modules: str, **files: str) -> list[Any]:
    """What importing each of *modules* in a fresh interpreter raises (DESCRIBE)."""
    proc = run_script(folder, f"""
        import json
        from multigil import interpreters
        import describe

        with interpreters.create() as interp:
            print(json.dumps([interp.call(describe.describe, name) for name in {modules!r}]))
        """, describe=DESCRIBE, **files)
    assert proc.returncode == 0, proc.stderr
    result: list[Any] = json.loads(proc.stdout)
    return result


@pytest.mark.timeout(120)
def test_extension_imported_directly(tmp_path: Path) -> None:
    """Imported by name, the extension's own error is the cause."""
    via_module, direct = describe_in_interpreter(tmp_path, "loader", "yaml._yaml",
                                                 loader="import msgpack._cmsgpack\n")
    assert via_module["name"] == "msgpack._cmsgpack" and via_module["importer"] == "loader"
    assert via_module["message"].startswith(
        "msgpack._cmsgpack cannot be imported in an isolated interpreter: it is a C extension "
        "without support for isolated interpreters")
    assert f"imported by: loader ({tmp_path / 'loader.py'} line 1)" in via_module["message"]
    assert via_module["cause_type"] == "ImportError"
    assert via_module["cause"] == "module msgpack._cmsgpack does not support loading in " \
                                  "subinterpreters"
    # The first frame outside importlib and PyYAML is the one that asked.
    assert direct["name"] == "yaml._yaml" and direct["importer"] == "describe"
    assert "`multigil check describe`" in direct["message"]
    assert "yaml._yaml does not support loading in subinterpreters" in direct["cause"]


@pytest.mark.timeout(120)
def test_other_import_errors_pass_unchanged(tmp_path: Path) -> None:
    broken, missing = describe_in_interpreter(
        tmp_path, "broken", "mg_no_such_module",
        broken="raise ImportError('broken on purpose', name='broken')\n")
    for outcome in (broken, missing):
        assert not outcome["marked"]
    assert broken["type"] == "builtins.ImportError" and broken["message"] == "broken on purpose"
    assert missing["type"] == "builtins.ModuleNotFoundError"
    assert missing["message"] == "No module named 'mg_no_such_module'"


# Standard-library extension modules that load in isolated interpreters; which
# of them are files (not built in) depends on how the Python was built.
EXTENSIONS = ("array", "_json", "_csv", "cmath", "_bisect", "_heapq", "_random", "binascii",
              "_struct", "select", "_statistics", "zlib", "math", "mmap", "termios", "resource",
              "_bz2", "_lzma", "_uuid", "_zoneinfo")


@pytest.mark.timeout(120)
def test_modules_keep_their_own_loaders(tmp_path: Path) -> None:
    """The guard stands in for a loader only while the module is created."""
    proc = run_script(tmp_path, f"""
        import importlib.machinery as m, importlib.util, sys
        from multigil import interpreters
        extension = next(name for name in {EXTENSIONS!r} if name not in sys.modules
                         and isinstance(importlib.util.find_spec(name).loader,
                                        m.ExtensionFileLoader))
        with interpreters.create() as interp:
            interp.prepare_main(extension=extension)
            interp.exec('''
        import importlib, importlib.machinery as m
        import mytop, json.decoder
        ext = importlib.import_module(extension)
        for mod, kind in ((mytop, m.SourceFileLoader), (ext, m.ExtensionFileLoader),
                          (json.decoder, m.SourceFileLoader)):
            assert type(mod.__loader__) is kind, (mod, mod.__loader__)
            assert mod.__spec__.loader is mod.__loader__, mod
        assert mytop.seen is m.SourceFileLoader
        print("real loaders")
        ''')
        """, mytop="seen = type(__loader__)\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "real loaders"


def test_error_is_recognisable_and_pickles() -> None:
    assert multigil.InterpreterImportError is InterpreterImportError
    assert "InterpreterImportError" in multigil.__all__
    exc = InterpreterImportError("refused", name="ext._c", path="/x/_c.so", importer="mine")
    assert isinstance(exc, ImportError)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is InterpreterImportError
    assert (str(back), back.name, back.path, back.importer) == ("refused", "ext._c",
                                                               "/x/_c.so", "mine")
    assert InterpreterImportError("x").importer is None


# ------------------------------------------- first imports, four at once --

FOUR_THREADS = """
    import importlib
    import sys
    import threading
    import multigil
    from multigil import interpreters

    module = sys.argv[1]
    barrier = threading.Barrier(4)
    outcomes = []

    def first_import():
        interp = interpreters.create()
        try:
            barrier.wait()
            interp.call(importlib.import_module, module)
        except interpreters.ExecutionFailed as exc:
            # the refusal, described: "<module> cannot be imported in an ..."
            refused = exc.excinfo.type.__name__ == "InterpreterImportError"
            outcomes.append(("refused" if refused else "other", exc.excinfo.msg.split()[0]))
        except BaseException as exc:
            outcomes.append(("other", repr(exc)))
        else:
            outcomes.append(("imported", module))
        finally:
            interp.close()

    threads = [threading.Thread(target=first_import) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(sorted(outcomes))
"""


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("module", ["yaml._yaml", "msgpack._cmsgpack"])
def test_four_threads_first_import_never_abort(tmp_path: Path, module: str) -> None:
    """Four fresh interpreters first-import a single-phase-init extension at
    the same moment, 20 times, each time in a new process: a clean refusal for
    each, exit status 0 (CPython 3.12/3.13 abort here without the guard)."""
    (tmp_path / "four.py").write_text(textwrap.dedent(FOUR_THREADS))
    expected = str(sorted([("refused", module)] * 4))
    for run in range(20):
        proc = subprocess.run([sys.executable, str(tmp_path / "four.py"), module],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"run {run}: exit {proc.returncode}\n{proc.stderr}"
        assert proc.stdout.strip() == expected, f"run {run}: {proc.stdout}{proc.stderr}"
        assert "Fatal Python error" not in proc.stderr
