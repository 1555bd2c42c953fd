"""Tests for ``multigil check``: verdicts, packages, crash isolation, JSON, arguments.

Most tests call :func:`multigil.__main__.main` in this process; the checks
themselves still run in child processes, which inherit the environment, so
the throw-away modules written to ``tmp_path`` reach them through PYTHONPATH.
Real numpy, PyYAML, msgpack and Pillow (the test extra) are checked as they
are. Some tests run ``python -m multigil check`` end to end.
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

import multigil
from multigil.__main__ import SUBCOMMANDS, main
from multigil._check import markdown, packages, probe, report, runner, targets, worker
from multigil._check.result import STATUSES, Result

SRC = str(Path(list(multigil.__path__)[0]).parent)

MODULES = {
    "mg_raises": "raise RuntimeError('boom at import')\n",
    "mg_aborts": "import os\nos.abort()\n",
    # ctypes would refuse on 3.12 (_ctypes is single-phase there): the signal itself.
    "mg_segfaults": "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n",
    "mg_exits": "import os\nos._exit(3)\n",
    "mg_sleeps": "import time\ntime.sleep(60)\n",
    "mg_needs_numpy": "import numpy\n",
    "mg_needs_missing": "import mg_no_such_dependency\n",
    "mg_survives_numpy": "try:\n    import numpy\nexcept ImportError:\n    numpy = None\n",
    "mg_prints": "print('noise on stdout ' * 1000)\nimport sys\nprint('noise', file=sys.stderr)\n",
}


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Throw-away modules in a folder on the checking processes' PYTHONPATH."""
    for name, source in MODULES.items():
        (tmp_path / f"{name}.py").write_text(source)
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    return tmp_path


def _check_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    status = main(["check", "--json", *args])
    out = capsys.readouterr().out
    return status, json.loads(out)


def _by_module(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["module"]: entry for entry in data["modules"]}


# ---------------------------------------------------------------- verdicts --

@pytest.mark.timeout(60)
def test_stdlib_module_is_ok(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["check", "json"])
    out = capsys.readouterr().out
    assert status == 0
    assert out.splitlines()[0].split() == ["MODULE", "STATUS", "REASON"]
    assert out.splitlines()[1].split()[:2] == ["json", "ok"]
    assert "1 module: 1 ok" in out
    assert "hint" not in out


@pytest.mark.timeout(60)
def test_numpy_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    # numpy is a test dependency: no importorskip, it must be there.
    status, data = _check_json(capsys, "numpy")
    assert status == 1
    entry = _by_module(data)["numpy"]
    assert entry["status"] == "refuses"
    assert entry["extension"].startswith("numpy.")
    assert entry["extension"] in entry["reason"]
    assert entry["distributions"] == ["numpy"]


@pytest.mark.timeout(60)
def test_refusal_in_text_output_has_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "numpy"]) == 1
    out = capsys.readouterr().out
    assert "refuses" in out and "does not support isolated interpreters" in out
    assert "main interpreter" in out and 'InterpreterPoolExecutor(fallback="process")' in out


@pytest.mark.timeout(60)
def test_pure_python_module_importing_numpy_refuses(
        modules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, data = _check_json(capsys, "mg_needs_numpy", "mg_survives_numpy")
    assert status == 1
    found = _by_module(data)
    assert found["mg_needs_numpy"]["status"] == "refuses"
    assert found["mg_needs_numpy"]["extension"].startswith("numpy.")
    # Caught the ImportError and carried on: ok, with the refusal noted.
    survived = found["mg_survives_numpy"]
    assert survived["status"] == "ok"
    assert any(ext.startswith("numpy.") for ext in survived["refused"])
    assert "refused" in survived["reason"]


@pytest.mark.timeout(60)
def test_nonexistent_module_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    status, data = _check_json(capsys, "mg_no_such_module", "json.no_such_submodule")
    assert status == 1
    for name, entry in _by_module(data).items():
        assert entry["status"] == "missing", entry
        assert entry["error"].startswith("ModuleNotFoundError")
        assert name in entry["reason"]


@pytest.mark.timeout(60)
def test_module_raising_at_import_is_error(
        modules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, data = _check_json(capsys, "mg_raises", "mg_needs_missing")
    assert status == 1
    found = _by_module(data)
    raises = found["mg_raises"]
    assert raises["status"] == "error"
    assert raises["error"] == "RuntimeError: boom at import"
    assert "RuntimeError: boom at import" in raises["reason"]
    assert "mg_raises.py" in raises["detail"]  # the traceback
    # A missing *dependency* makes a broken module, not a missing one.
    needs = found["mg_needs_missing"]
    assert needs["status"] == "error"
    assert "mg_no_such_dependency" in needs["reason"]


@pytest.mark.timeout(90)
def test_crash_is_reported_and_the_batch_goes_on(
        modules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # One checking process (--jobs 1) for the whole batch: the modules after
    # each crash must still be checked, by a new process.
    names = ["json", "mg_aborts", "mg_raises", "mg_exits", "mg_segfaults", "mg_prints",
             "decimal"]
    status, data = _check_json(capsys, "--jobs", "1", *names)
    assert status == 1
    found = _by_module(data)
    assert [entry["module"] for entry in data["modules"]] == names
    assert found["json"]["status"] == "ok"
    aborts = found["mg_aborts"]
    assert aborts["status"] == "crashes"
    assert "SIGABRT" in aborts["reason"]
    exits = found["mg_exits"]
    assert exits["status"] == "crashes"
    assert "exited with status 3" in exits["reason"]
    segfaults = found["mg_segfaults"]
    assert segfaults["status"] == "crashes"
    assert "SIGSEGV" in segfaults["reason"]
    assert found["mg_raises"]["status"] == "error"
    assert found["mg_prints"]["status"] == "ok"  # its output is not the protocol
    assert found["decimal"]["status"] == "ok"
    assert data["summary"]["crashes"] == 3


@pytest.mark.timeout(90)
def test_timeout_kills_only_that_module(
        modules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, data = _check_json(capsys, "--jobs", "1", "--timeout", "4",
                               "mg_sleeps", "json")
    assert status == 1
    found = _by_module(data)
    assert found["mg_sleeps"]["status"] == "timeout"
    assert "4 s" in found["mg_sleeps"]["reason"]
    assert found["json"]["status"] == "ok"


# ---------------------------------------------------------------- packages --

PACKAGE = {
    "mg_pkg/__init__.py": "",
    "mg_pkg/good.py": "VALUE = 1\n",
    "mg_pkg/bad.py": "import os\nos.abort()\n",
    "mg_pkg/uses_numpy.py": "import numpy\n",
    "mg_pkg/optional.py": "import mg_not_installed_anywhere\n",
    "mg_pkg/sub/__init__.py": "",
    "mg_pkg/sub/deep.py": "",
    # Not what users import: never checked (importing them would do harm).
    "mg_pkg/__main__.py": "import os\nos._exit(9)\n",
    "mg_pkg/_private.py": "import os\nos._exit(9)\n",
    "mg_pkg/tests/__init__.py": "import os\nos._exit(9)\n",
    "mg_pkg/tests/test_it.py": "import os\nos._exit(9)\n",
    "mg_pkg/test_things.py": "import os\nos._exit(9)\n",
    "mg_pkg/_vendor/__init__.py": "import os\nos._exit(9)\n",
    "mg_okpkg/__init__.py": "",
    "mg_okpkg/a.py": "",
    "mg_okpkg/optional.py": "import mg_not_installed_anywhere\n",
}


@pytest.fixture
def package(modules: Path) -> Path:
    """Packages mg_pkg (a submodule crashes, one refuses) and mg_okpkg, on PYTHONPATH."""
    for name, source in PACKAGE.items():
        (modules / name).parent.mkdir(parents=True, exist_ok=True)
        (modules / name).write_text(source)
    return modules


@pytest.mark.timeout(180)
def test_real_packages(capsys: pytest.CaptureFixture[str]) -> None:
    """PIL imports but PIL.Image refuses; PyYAML's C loader refuses; msgpack
    carries on without its extension; numpy refuses outright."""
    status, data = _check_json(capsys, "PIL", "yaml", "msgpack", "numpy")
    assert status == 1
    found = _by_module(data)

    pil = found["PIL"]
    assert pil["status"] == "partial"
    assert pil["extension"] == "PIL._imaging"
    parts = {part["module"]: part for part in pil["submodules"]}
    assert parts["PIL.Image"]["status"] == "refuses"
    assert parts["PIL.Image"]["extension"] == "PIL._imaging"
    assert "PIL.Image" in pil["reason"] and "PIL._imaging" in pil["reason"]
    assert pil["found"] == len(pil["submodules"]) > 20
    assert not any(name.rpartition(".")[2].startswith("_") for name in parts)

    yaml = found["yaml"]
    assert yaml["status"] == "partial"
    parts = {part["module"]: part for part in yaml["submodules"]}
    assert parts["yaml.cyaml"]["status"] == "refuses"
    assert parts["yaml.cyaml"]["extension"] == "yaml._yaml"
    assert {part["status"] for name, part in parts.items() if name != "yaml.cyaml"} == {"ok"}
    assert "yaml._yaml" in yaml["refused"]
    assert "yaml.cyaml refuses (C extension yaml._yaml)" in yaml["reason"]

    msgpack = found["msgpack"]
    assert msgpack["status"] == "ok"
    assert "msgpack._cmsgpack" in msgpack["refused"] and "carried on" in msgpack["reason"]
    assert {part["status"] for part in msgpack["submodules"]} == {"ok"}

    numpy = found["numpy"]
    assert numpy["status"] == "refuses" and numpy["submodules"] == []
    assert data["summary"]["partial"] == 2


@pytest.mark.timeout(120)
def test_no_submodules_checks_only_the_module(capsys: pytest.CaptureFixture[str]) -> None:
    status, data = _check_json(capsys, "--no-submodules", "yaml", "json")
    found = _by_module(data)
    assert found["yaml"]["status"] == "ok" and found["yaml"]["submodules"] == []
    assert found["yaml"]["found"] is None
    assert "yaml._yaml refused" in found["yaml"]["reason"]
    assert status == 0


@pytest.mark.timeout(180)
def test_package_with_crashing_submodule(
        package: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A submodule that kills its checking process is reported ``crashes``; the
    checker lives on, reports the package ``partial``, and exits normally."""
    status, data = _check_json(capsys, "mg_pkg", "mg_okpkg")
    assert status == 1
    found = _by_module(data)
    pkg = found["mg_pkg"]
    parts = {part["module"]: part for part in pkg["submodules"]}
    # Breadth first, shortest names first; private, test, vendored and
    # __main__ modules left out (each would kill its checking process).
    assert list(parts) == ["mg_pkg.bad", "mg_pkg.sub", "mg_pkg.good", "mg_pkg.optional",
                           "mg_pkg.uses_numpy", "mg_pkg.sub.deep"]
    assert parts["mg_pkg.bad"]["status"] == "crashes"
    assert "SIGABRT" in parts["mg_pkg.bad"]["reason"]
    assert parts["mg_pkg.uses_numpy"]["status"] == "refuses"
    assert parts["mg_pkg.optional"]["status"] == "error"
    assert parts["mg_pkg.optional"]["fails_in_main"] is True
    assert {parts[name]["status"] for name in ("mg_pkg.good", "mg_pkg.sub",
                                                "mg_pkg.sub.deep")} == {"ok"}
    assert pkg["status"] == "partial"
    assert pkg["reason"].startswith("imports, but 2 of its 5 submodules do not: ")
    assert "mg_pkg.uses_numpy refuses (C extension numpy." in pkg["reason"]
    assert "mg_pkg.bad crashes" in pkg["reason"]
    assert "1 more fails in the main interpreter too" in pkg["reason"]
    # Failing in the main interpreter too is not the interpreters' fault.
    okpkg = found["mg_okpkg"]
    assert okpkg["status"] == "ok"
    assert "its 1 submodule imports too" in okpkg["reason"]
    assert data["summary"]["crashes"] == 0  # the targets; the crash is a submodule's


@pytest.mark.timeout(120)
def test_max_submodules_cuts_the_walk(package: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, data = _check_json(capsys, "--max-submodules", "2", "mg_pkg")
    pkg = _by_module(data)["mg_pkg"]
    assert [part["module"] for part in pkg["submodules"]] == ["mg_pkg.bad", "mg_pkg.sub"]
    assert pkg["found"] == 6
    assert "(the first 2 of 6 found)" in pkg["reason"]
    assert status == 1


@pytest.mark.timeout(60)
def test_submodules_walk_reads_directories(package: Path) -> None:
    names, total = probe.submodules("mg_pkg", [str(package / "mg_pkg")], 100)
    assert names == ["mg_pkg.bad", "mg_pkg.sub", "mg_pkg.good", "mg_pkg.optional",
                     "mg_pkg.uses_numpy", "mg_pkg.sub.deep"]
    assert total == 6
    assert "mg_pkg" not in sys.modules  # found without importing anything


@pytest.mark.timeout(180)
def test_distributions_table_and_markdown(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("PyYAML\nmsgpack\nnumpy\nPillow\n")
    args = ["check", "-r", str(requirements), "--max-submodules", "20"]
    status = main(args)
    out = capsys.readouterr().out
    assert status == 1
    lines = out.splitlines()
    assert lines[0].split() == ["DISTRIBUTION", "VERSION", "STATUS", "MODULES", "REASON"]
    rows = {line.split()[0].lower(): line.split() for line in lines[1:5]}
    assert rows["pyyaml"][2:4] == ["partial", "yaml"]
    assert rows["msgpack"][2:4] == ["ok", "msgpack"]
    assert rows["numpy"][2:4] == ["refuses", "numpy"]
    assert rows["pillow"][2:4] == ["partial", "PIL"]
    assert rows["numpy"][1] == numpy_version()
    assert "4 distributions: 1 ok, 2 partial, 1 refuses" in out

    assert main([*args, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    dists = {row["name"].lower(): row for row in data["distributions"]}
    assert dists["pillow"]["status"] == "partial" and dists["pillow"]["modules"] == ["PIL"]
    assert dists["numpy"]["version"] == numpy_version()

    assert main([*args, "--markdown"]) == 1
    page = capsys.readouterr().out
    assert page.startswith("# What works in isolated interpreters today\n")
    assert "| distribution | version | status | modules | what happens |" in page
    assert f"| numpy | {numpy_version()} | **refuses** | `numpy` |" in page
    assert "### PIL" in page and "`PIL.Image`" in page
    for name in ("Py_mod_multiple_interpreters", "Py_MOD_PER_INTERPRETER_GIL_SUPPORTED",
                 "subinterpreters_compatible=own_gil",
                 "py::multiple_interpreters::per_interpreter_gil()", "PyO3"):
        assert name in page


def numpy_version() -> str:
    from importlib import metadata

    return metadata.version("numpy")


# -------------------------------------------------------------------- JSON --

@pytest.mark.timeout(60)
def test_json_structure(modules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, data = _check_json(capsys, "json", "mg_no_such_module", "json")
    assert status == 1
    assert set(data) >= {"python", "executable", "multigil", "modules", "distributions",
                         "summary", "ok", "warnings"}
    assert data["distributions"] == []  # named modules: no distribution table
    assert data["ok"] is False
    assert data["multigil"] == multigil.__version__
    assert [entry["module"] for entry in data["modules"]] == ["json", "mg_no_such_module"]
    assert list(data["summary"]) == list(STATUSES)
    assert data["summary"]["ok"] == 1 and data["summary"]["missing"] == 1
    fields = {"module", "status", "reason", "extension", "error", "refused", "detail",
              "seconds", "distributions", "fails_in_main", "submodules", "found"}
    for entry in data["modules"]:
        assert set(entry) == fields
        assert entry["status"] in STATUSES
        assert isinstance(entry["reason"], str) and "\n" not in entry["reason"]
        assert isinstance(entry["seconds"], float)


@pytest.mark.timeout(60)
def test_json_all_ok(capsys: pytest.CaptureFixture[str]) -> None:
    status, data = _check_json(capsys, "json", "xml.etree.ElementTree")
    assert status == 0
    assert data["ok"] is True
    assert data["summary"]["ok"] == 2


# ------------------------------------------------------ sources of modules --

@pytest.mark.timeout(60)
def test_requirements_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "more.txt").write_text("NumPy>=1.0  # distribution names are case-blind\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(textwrap.dedent("""\
        # comment
        --index-url https://example.invalid/simple
        -r more.txt
        mg-not-installed-dist==1.0 ; python_version >= "3"
        """))
    status = main(["check", "--json", "--requirements", str(requirements)])
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    found = _by_module(data)
    assert status == 1
    assert found["numpy"]["status"] == "refuses"
    assert found["mg_not_installed_dist"]["status"] == "missing"
    assert "mg-not-installed-dist" in captured.err  # warned: guessed the module name


@pytest.mark.timeout(60)
def test_installed(modules: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:
    table = {"json": ["dist-a"], "_mg_private": ["dist-a"], "__pycache__": ["dist-b"],
             "1notamodule": ["dist-b"], "mg_raises": ["dist-b", "dist-c"]}
    (modules / "_mg_private.py").write_text("")
    monkeypatch.setattr(targets, "_top_level", lambda: table)
    status, data = _check_json(capsys, "--installed")
    assert [entry["module"] for entry in data["modules"]] == ["json", "mg_raises"]
    assert _by_module(data)["mg_raises"]["distributions"] == ["dist-b", "dist-c"]
    assert status == 1
    status, data = _check_json(capsys, "--installed", "--all")
    assert [entry["module"] for entry in data["modules"]] == ["_mg_private", "json",
                                                              "mg_raises"]


# --------------------------------------------------------------- arguments --

@pytest.mark.timeout(30)
@pytest.mark.parametrize("argv", [
    [],                               # nothing to check
    ["--timeout", "0", "json"],
    ["--timeout", "soon", "json"],
    ["--jobs", "0", "json"],
    ["not-a-module"],
    ["1abc"],
    ["json", "--requirements", "/no/such/requirements.txt"],
    ["json", "--no-such-option"],
])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", *argv]) == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "error:" in err


@pytest.mark.timeout(30)
def test_empty_requirements_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "requirements.txt"
    empty.write_text("# nothing\n")
    assert main(["check", "--requirements", str(empty)]) == 2
    assert "no modules to check" in capsys.readouterr().err


@pytest.mark.timeout(30)
def test_registered_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert SUBCOMMANDS["check"] == "multigil._check.cli"
    assert main(["check", "--help"]) == 0
    out = capsys.readouterr().out
    for word in ("--installed", "--requirements", "--json", "--timeout", *STATUSES):
        assert word in out


# -------------------------------------------------------------- end to end --

@pytest.mark.timeout(120)
def test_python_m_multigil_check_end_to_end() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-m", "multigil", "check", "json"],
                          capture_output=True, text=True, env=env, timeout=100,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split()[:2] == ["json", "ok"]
    assert "1 module: 1 ok" in done.stdout
    done = subprocess.run([sys.executable, "-m", "multigil", "check", "json", "numpy"],
                          capture_output=True, text=True, env=env, timeout=100,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stderr
    assert "numpy" in done.stdout and "refuses" in done.stdout


@pytest.mark.timeout(180)
def test_crashes_end_to_end(package: Path) -> None:
    """Run as a user runs it: modules and a submodule that kill their checking
    process are reported ``crashes``, and the checker itself exits normally."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-m", "multigil", "check", "--json", "mg_aborts",
                           "mg_segfaults", "mg_pkg", "json"],
                          capture_output=True, text=True, env=env, timeout=150,
                          stdin=subprocess.DEVNULL, cwd=package)
    assert done.returncode == 1, done.stderr
    found = _by_module(json.loads(done.stdout))
    assert found["mg_aborts"]["status"] == "crashes"
    assert found["mg_segfaults"]["status"] == "crashes"
    bad = {part["module"]: part for part in found["mg_pkg"]["submodules"]}["mg_pkg.bad"]
    assert bad["status"] == "crashes" and "SIGABRT" in bad["reason"]
    assert found["mg_pkg"]["status"] == "partial"
    assert found["json"]["status"] == "ok"


# ------------------------------------------------------------- the pieces --

def _outcome(ok: bool, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"ok": ok, "refused": []}
    if not ok:
        base.update(type="ImportError", message="", name=None, refusal=None, traceback="tb")
    base.update(fields)
    return base


def _never() -> dict[str, Any]:
    raise AssertionError("the main interpreter should not be asked")


@pytest.mark.timeout(10)
def test_classify() -> None:
    ok = worker.classify("m", _outcome(True), _never)
    assert ok.status == "ok" and ok.refused == []
    # A stdlib fallback (3.12's _datetime) is kept in the data, not shown.
    quiet = worker.classify("m", _outcome(True, refused=[
        ["_datetime", "module _datetime does not support loading in subinterpreters"]]), _never)
    assert quiet.refused == ["_datetime"] and "refused" not in quiet.reason
    itself = worker.classify("ext", _outcome(False, refusal=["ext", "no"]), _never)
    assert itself.status == "refuses" and "is a C extension" in itself.reason
    missing = worker.classify("a.b", _outcome(False, type="ModuleNotFoundError", name="a"),
                              lambda: _outcome(False, type="ModuleNotFoundError", name="a"))
    assert missing.status == "missing"
    isolated_only = worker.classify("m", _outcome(False, type="RuntimeError", message="x"),
                                    lambda: _outcome(True))
    assert isolated_only.status == "error" and "only in an isolated" in isolated_only.reason
    swallowed = worker.classify(
        "m", _outcome(False, type="AttributeError", message="x", refused=[
            ["fast._speedups", "module fast._speedups does not support loading in "
                               "subinterpreters"]]),
        lambda: _outcome(True))
    assert swallowed.status == "refuses" and swallowed.extension == "fast._speedups"


@pytest.mark.timeout(10)
def test_parse_requirements(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("attrs\n-r main.txt\n")  # a cycle: read once
    main_file = tmp_path / "main.txt"
    main_file.write_text(textwrap.dedent("""\
        requests[socks]>=2 ; python_version >= "3.8"   # trailing comment
        PyYAML \\
            ==6.0
        --requirement=base.txt
        -c constraints.txt
        -e ./local/path
        -e git+https://example.invalid/repo.git#egg=from-vcs
        pkg @ https://example.invalid/pkg-1.0.whl
        https://example.invalid/x.tar.gz#egg=from-url
        ./some/dir
        requests
        """))
    assert targets.parse_requirements(main_file) == [
        "requests", "PyYAML", "attrs", "from-vcs", "pkg", "from-url"]


@pytest.mark.timeout(10)
def test_modules_of_distributions(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {"yaml": ["PyYAML"], "_yaml": ["PyYAML"], "numpy": ["numpy"]}
    monkeypatch.setattr(targets, "_top_level", lambda: table)
    found, unresolved = targets.modules_of_distributions(["pyyaml", "Not.Here"])
    assert [(t.module, t.distributions) for t in found] == [
        ("yaml", ["PyYAML"]), ("not_here", ["Not.Here"])]
    assert unresolved == ["Not.Here"]
    found, _ = targets.modules_of_distributions(["PYYAML"], include_private=True)
    assert [t.module for t in found] == ["_yaml", "yaml"]


@pytest.mark.timeout(10)
def test_report_pieces() -> None:
    results = [Result("json", "ok", "imports"),
               Result("a.very.long.module.name", "refuses", "r " * 100, extension="x")]
    lines = report.table(results, width=80).splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert lines[2].endswith("...")
    # Columns line up.
    assert len({line.index(line.split()[1]) for line in lines}) == 1
    assert report.summary(results) == "2 modules: 1 ok, 1 refuses"
    assert report.exit_status(results) == 1
    assert report.exit_status(results[:1]) == 0
    assert report.hints(results[:1]) == []
    with pytest.raises(ValueError):
        Result("m", "fine", "")


@pytest.mark.timeout(10)
def test_runner_helpers() -> None:
    assert runner._death(-6) == "died with SIGABRT"
    assert runner._death(3) == "exited with status 3"
    tail = "noise\nFatal Python error: Aborted\n\nCurrent thread:\n  File x\n"
    assert runner._why(tail) == "Fatal Python error: Aborted"
    assert runner._why("free(): invalid pointer\n") == "free(): invalid pointer"
    assert runner.check_modules([]).results == []


@pytest.mark.timeout(10)
def test_package_verdict() -> None:
    def part(name: str, status: str, **fields: Any) -> Result:
        return Result(name, status, "r", **fields)

    ok = packages.verdict(Result("p", "ok", "imports in an isolated interpreter"),
                          [part("p.a", "ok"), part("p.b", "ok")])
    assert ok.status == "ok" and ok.reason.endswith("; its 2 submodules import too")
    mixed = packages.verdict(
        Result("p", "ok", "imports", found=9),
        [part("p.core", "refuses", extension="p._c"), part("p.longer", "refuses",
                                                             extension="p._c"),
         part("p.x", "timeout"), part("p.y", "error"), part("p.ok", "ok"),
         part("p.gone", "error", fails_in_main=True)])
    assert mixed.status == "partial" and mixed.extension == "p._c"
    assert mixed.reason == (
        "imports, but 4 of its 5 submodules (the first 6 of 9 found) do not: "
        "p.core and p.longer refuse (C extension p._c); p.x times out; p.y fails; "
        "1 more fails in the main interpreter too (a missing optional dependency?), "
        "not counted")
    own = Result("p", "refuses", "needs x")
    assert packages.verdict(own, []) is own and own.status == "refuses"
    assert packages.names(["a"]) == "a"
    assert packages.names(["a", "b"]) == "a and b"
    assert packages.names(["a", "b", "c", "d"]) == "a, b, c and d"
    assert packages.names(list("abcde")) == "a, b, c and 2 more"
    # Submodules travel in JSON and back.
    assert Result.from_dict(mixed.to_dict()) == mixed


@pytest.mark.timeout(10)
def test_by_distribution() -> None:
    results = [Result("setuptools", "ok", "fine", distributions=["setuptools"]),
               Result("pkg_resources", "refuses", "needs x", distributions=["setuptools"]),
               Result("numpy", "refuses", "needs y", distributions=["numpy"]),
               Result("a", "crashes", "died", distributions=["two"]),
               Result("b", "refuses", "needs z", distributions=["two"]),
               Result("loose", "ok", "fine")]
    rows = report.by_distribution(results, {"numpy": "2.0", "setuptools": None})
    assert [(r.name, r.version, r.status, r.modules) for r in rows] == [
        ("numpy", "2.0", "refuses", ["numpy"]),
        ("setuptools", None, "partial", ["setuptools", "pkg_resources"]),
        ("two", None, "crashes", ["a", "b"])]
    assert rows[1].reason == "setuptools: fine; pkg_resources: needs x"
    table = report.distribution_table(rows, width=200).splitlines()
    assert table[0].split() == ["DISTRIBUTION", "VERSION", "STATUS", "MODULES", "REASON"]
    assert table[2].split()[:4] == ["setuptools", "?", "partial", "setuptools,"]
    assert report.summary(rows, "distribution") == "3 distributions: 1 partial, 1 refuses, 1 crashes"
    page = markdown.page(results, rows)
    assert "| two | ? | **crashes** | `a`, `b` | a: died; b: needs z |" in page
    assert "**crashes**: its import kills the process" in page


@pytest.mark.timeout(120)
def test_progress_counts_submodules_as_they_are_found(package: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    outcome = runner.check_modules(["mg_okpkg", "json"], jobs=1,
                                   progress=lambda r, done, total: seen.append(
                                       (r.module, done, total)))
    assert [r.module for r in outcome.results] == ["mg_okpkg", "json"]
    assert [done for _, done, _ in seen] == list(range(1, len(seen) + 1))
    totals = [total for _, _, total in seen]
    assert totals == sorted(totals)
    # The two named and mg_okpkg's two submodules, found with its result;
    # json's four come with json's.
    assert seen[0] == ("mg_okpkg", 1, 4)
    assert seen[-1][1] == seen[-1][2] == len(seen) == 2 + 2 + 4
    assert {name for name, _, _ in seen} >= {"mg_okpkg.a", "mg_okpkg.optional", "json.decoder"}


@pytest.mark.timeout(10)
def test_package_none_of_whose_submodules_import_takes_their_status() -> None:
    namespace = packages.verdict(
        Result("ns", "ok", "imports in an isolated interpreter"),
        [Result("ns.a", "refuses", "r", extension="np._c"),
         Result("ns.b", "refuses", "r", extension="np._c"), Result("ns.c", "crashes", "r")])
    assert namespace.status == "refuses" and namespace.extension == "np._c"
    assert namespace.reason == ("imports, but none of its 3 submodules do: ns.a and ns.b "
                                "refuse (C extension np._c); ns.c crashes")
    single = packages.verdict(Result("one", "ok", "imports"), [Result("one.x", "crashes", "r")])
    assert single.status == "crashes"
    assert single.reason == "imports, but its only submodule does not: one.x crashes"
