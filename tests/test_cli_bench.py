"""Tests for ``multigil bench``: the CLI end to end, its JSON, plot and errors.

The end-to-end runs go through a subprocess (``python -m multigil``) so that
they exercise what a user runs, process pools' re-imports included. The
child imports multigil from wherever this test process did, so the same tests
work against the source tree (PYTHONPATH=src) and an installed build.
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import multigil
from multigil.__main__ import SUBCOMMANDS, main
from multigil._bench import report, stats, suite
from multigil._bench.contenders import Contender, SerialExecutor, discover
from multigil._bench.progress import Progress
from multigil._bench.runner import RunConfig, run_suite, worker_counts_for

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SRC = str(Path(list(multigil.__path__)[0]).parent)
ALL_WORKLOADS = [wl.name for wl in suite.SUITE]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    return env


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "multigil", *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


# -- end to end -------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One full ``--quick`` run (every workload), shared by the tests below."""
    out = tmp_path_factory.mktemp("bench")
    args = ["bench", "--quick", "--repeats", "2", "--json", str(out / "r.json")]
    if _has_matplotlib():
        args += ["--plot", str(out / "scaling.png")]
    t0 = time.perf_counter()
    proc = _cli(*args)
    yield {"proc": proc, "dir": out, "elapsed": time.perf_counter() - t0}


@pytest.mark.timeout(300)
def test_quick_run_succeeds_and_prints_tables(quick_run: dict[str, Any]) -> None:
    proc = quick_run["proc"]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    for heading in ("CPU-bound pure Python", "Scaling", "Tiny tasks", "Data transfer", "Pools of", "Verdict"):
        assert heading in out, heading
    for name in ALL_WORKLOADS:
        assert name in out, name
    # stderr is not a terminal here: plain progress lines, never a carriage return.
    assert "\r" not in proc.stderr
    assert "multigil bench [" in proc.stderr


@pytest.mark.timeout(300)
def test_quick_run_json_has_every_contender_and_workload(quick_run: dict[str, Any]) -> None:
    assert quick_run["proc"].returncode == 0, quick_run["proc"].stderr
    doc = json.loads((quick_run["dir"] / "r.json").read_text())
    assert doc["schema"] == "multigil-bench/1"
    assert doc["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert doc["python"]["implementation"] == "CPython"
    assert doc["machine"]["cpu_count"] >= 1 and doc["machine"]["cpu_model"]

    names = {c["name"]: c for c in doc["contenders"]}
    assert {"serial", "threads", "processes", "multigil", "stdlib-interpreters"} <= set(names)
    assert names["stdlib-interpreters"]["available"] == hasattr(cf, "InterpreterPoolExecutor")
    for c in doc["contenders"]:
        # Unavailable contenders are listed with the reason, not dropped.
        assert c["available"] or c["note"]
    assert [w["name"] for w in doc["workloads"]] == ALL_WORKLOADS

    cells = {(r["contender"], r["workload"], r["workers"]) for r in doc["results"]}
    ran = [c for c in doc["contenders"] if c["ran"]]
    assert {"serial", "threads", "processes"} <= {c["name"] for c in ran}
    n = doc["options"]["max_workers"]
    for c in ran:
        for wl in doc["workloads"]:
            if c["name"] == "serial":
                if wl["group"] in ("startup", "memory"):
                    continue  # serial has no pool to start or weigh
                assert (c["name"], wl["name"], 1) in cells
            elif wl["group"] == "memory" and wl["note"]:
                continue  # no /proc here
            elif wl["group"] == "cpu":
                for k in doc["options"]["worker_counts"]:
                    assert (c["name"], wl["name"], k) in cells, (c["name"], wl["name"], k)
            else:
                assert (c["name"], wl["name"], n) in cells, (c["name"], wl["name"])
    for r in doc["results"]:
        assert len(r["samples"]) == r["n"] >= 1
        assert r["min"] <= r["median"] <= r["max"]
        if r["workload"].startswith("cpu/") and r["contender"] != "serial":
            assert r["speedup_vs_serial"]["median"] > 0
    assert doc["verdict"]


@pytest.mark.timeout(300)
def test_quick_run_plot_is_a_png(quick_run: dict[str, Any]) -> None:
    pytest.importorskip("matplotlib")  # the missing case is tested below
    assert quick_run["proc"].returncode == 0, quick_run["proc"].stderr
    data = (quick_run["dir"] / "scaling.png").read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000


@pytest.mark.timeout(120)
def test_only_subset_runs_just_that(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    proc = _cli(
        "bench", "--quick", "--only", "fib,tiny/submit", "--repeats", "1", "--workers", "1",
        "--json", str(path),
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(path.read_text())
    assert [w["name"] for w in doc["workloads"]] == ["cpu/fib", "tiny/submit"]
    assert {r["workload"] for r in doc["results"]} == {"cpu/fib", "tiny/submit"}
    assert doc["options"]["worker_counts"] == [1]
    assert "Data transfer" not in proc.stdout


@pytest.mark.timeout(120)
def test_plot_without_matplotlib_is_one_clear_line(tmp_path: Path) -> None:
    png = tmp_path / "x.png"
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"  # what an absent package looks like
        "from multigil.__main__ import main\n"
        f"sys.exit(main(['bench', '--quick', '--only', 'fib', '--plot', {str(png)!r}]))\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "matplotlib" in lines[0] and "multigil[plot]" in lines[0]
    # It says so before the run, not after it.
    assert proc.stdout == "" and not png.exists()
    assert time.perf_counter() - t0 < 30


# -- usage errors ---------------------------------------------------------------------


BAD_ARGS = [
    ["bench", "--workers", "0"],
    ["bench", "--workers", "two"],
    ["bench", "--repeats", "-3"],
    ["bench", "--only", "nosuchthing"],
    ["bench", "--only", "cpu,nosuchthing"],
    ["bench", "--only", ","],
    ["bench", "--bogus"],
    ["bench", "--plot", "chart.txt"],
    ["bench", "--json", "/no/such/folder/r.json"],
    ["bench", "extra"],
    ["frobnicate"],
    [],
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("argv", BAD_ARGS, ids=lambda a: " ".join(a) or "<none>")
def test_bad_arguments_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "usage:" in err
    assert "Traceback" not in err


@pytest.mark.timeout(30)
def test_unknown_only_name_lists_valid_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--only", "fibb"]) == 2
    err = capsys.readouterr().err
    assert "'fibb'" in err
    for name in ("cpu", "tiny", "cpu/fib", "data/bytes-16MiB", "memory/idle-worker"):
        assert name in err


@pytest.mark.timeout(60)
def test_bad_arguments_through_python_m() -> None:
    proc = _cli("bench", "--workers", "-1", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: python -m multigil bench")
    assert "Traceback" not in proc.stderr


@pytest.mark.timeout(30)
def test_help_lists_bench_and_returns_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "bench" in capsys.readouterr().out
    assert main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--quick", "--all", "--workers", "--only", "--repeats", "--json", "--plot"):
        assert option in out


@pytest.mark.timeout(30)
def test_subcommand_table_is_the_extension_point() -> None:
    assert SUBCOMMANDS["bench"] == "multigil._bench.cli"
    import importlib

    for module_name in SUBCOMMANDS.values():
        module = importlib.import_module(module_name)
        assert isinstance(module.HELP, str) and callable(module.configure) and callable(module.run)


@pytest.mark.timeout(60)
def test_console_script_is_declared_and_runs() -> None:
    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    scripts = tomllib.loads(pyproject.read_text())["project"]["scripts"]
    assert scripts["multigil"] == "multigil.__main__:main"
    script = Path(sys.executable).parent / "multigil"   # installed beside the interpreter
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stderr
    assert "bench" in proc.stdout and "check" in proc.stdout


# -- the runner, in process ---------------------------------------------------------------


class FakeMultigilExecutor(cf.ThreadPoolExecutor):
    """Stands in for multigil.InterpreterPoolExecutor: same signatures, threads inside."""

    map_calls: list[dict[str, Any]] = []

    def __init__(self, max_workers: int | None = None, *, initializer: Any = None,
                 initargs: tuple[Any, ...] = (), max_tasks_per_worker: int | None = None) -> None:
        super().__init__(max_workers=max_workers, initializer=initializer, initargs=initargs)

    def map(self, fn: Any, *iterables: Any, timeout: float | None = None,
            chunksize: int | None = None, ordered: bool = True) -> Any:
        FakeMultigilExecutor.map_calls.append({"chunksize": chunksize, "ordered": ordered})
        return super().map(fn, *iterables, timeout=timeout)


def _tiny_config(**kw: Any) -> RunConfig:
    base: dict[str, Any] = {
        "max_workers": 2, "worker_counts": (1, 2), "repeats": 2, "quick": True, "tasks_per_worker": 1,
    }
    base.update(kw)
    return RunConfig(**base)


@pytest.mark.timeout(120)
def test_multigil_contender_uses_automatic_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    # setitem, not setattr: reading the old value would run the lazy import.
    monkeypatch.setitem(vars(multigil), "InterpreterPoolExecutor", FakeMultigilExecutor)
    FakeMultigilExecutor.map_calls.clear()
    contenders = [c for c in discover() if c.name in ("serial", "threads", "multigil")]
    mg = next(c for c in contenders if c.name == "multigil")
    assert mg.available, mg.note
    wls = suite.resolve(["fib", "tiny", "ints-100k"])
    results = run_suite(wls, contenders, _tiny_config())
    assert "multigil" not in results.notes
    for wl in ("tiny/submit", "tiny/map", "data/ints-100k"):
        assert len(results.samples[("multigil", wl, 2)]) == 2
    assert results.speedup("multigil", "cpu/fib", 1) is not None
    # multigil chunks by itself: the bench must not pass a chunksize.
    calls = FakeMultigilExecutor.map_calls
    assert calls and all(c["chunksize"] is None for c in calls)
    assert results.extras["map chunking"]["multigil"] == "automatic chunking"
    text = report.render(results)
    assert "multigil" in text and "Verdict" in text


class _BrokenExecutor(SerialExecutor):
    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("worker exploded")


@pytest.mark.timeout(60)
def test_a_failing_contender_is_noted_and_the_run_goes_on() -> None:
    broken = Contender("broken", "broken", "interpreters", lambda n: _BrokenExecutor())
    missing = Contender("missing", "missing", "interpreters", note="not built")
    contenders = [c for c in discover() if c.name in ("serial", "threads")] + [broken, missing]
    results = run_suite(suite.resolve(["fib", "submit"]), contenders, _tiny_config())
    assert "worker exploded" in results.notes["broken"]
    assert results.notes["missing"] == "not built"
    assert results.samples[("threads", "tiny/submit", 2)]
    assert not any(k[0] == "broken" for k in results.samples)
    text = report.render(results)
    assert "worker exploded" in text and "not built" in text
    doc = report.to_json(results)
    json.dumps(doc, allow_nan=False)
    assert {c["name"]: c["ran"] for c in doc["contenders"]}["broken"] is False


@pytest.mark.timeout(60)
def test_rounds_are_interleaved(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []

    def tracing(name: str) -> Contender:
        class Tracing(SerialExecutor):
            def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
                order.append(name)
                return super().submit(fn, *args, **kwargs)

        return Contender(name, name, "threads", lambda n: Tracing())

    serial = next(c for c in discover() if c.name == "serial")
    cfg = _tiny_config(worker_counts=(2,), repeats=3)
    run_suite(suite.resolve(["tiny/submit"]), [serial, tracing("a"), tracing("b")], cfg)
    calls = suite.SUITE[[w.name for w in suite.SUITE].index("tiny/submit")].quick_size
    # Collapse runs of the same contender: each round visits a and b once, in
    # rotated order, after the pool-starting probe tasks.
    runs = [name for i, name in enumerate(order) if i == 0 or order[i - 1] != name]
    assert runs.count("a") >= 4 and runs.count("b") >= 4  # warm-up + 3 rounds, not all-of-a first
    assert order.count("a") >= 4 * calls


# -- small pieces ------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_resolve_names() -> None:
    assert [w.name for w in suite.resolve(["cpu"])] == ["cpu/fib", "cpu/json", "cpu/regex", "cpu/nbody"]
    # Suite order, whatever the order asked for; bare names work.
    assert [w.name for w in suite.resolve(["submit", "cpu/fib", "FIB"])] == ["cpu/fib", "tiny/submit"]
    with pytest.raises(ValueError, match="valid names: memory, startup, cpu, tiny, data"):
        suite.resolve(["gpu"])


@pytest.mark.timeout(10)
def test_worker_counts() -> None:
    assert worker_counts_for(1) == (1,)
    assert worker_counts_for(4) == (1, 2, 3, 4)
    assert worker_counts_for(12) == (1, 2, 4, 8, 12)
    assert worker_counts_for(16) == (1, 2, 4, 8, 16)


@pytest.mark.timeout(10)
def test_stats() -> None:
    s = stats.summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.median, s.q1, s.q3, s.spread, s.min, s.max, s.n) == (3.0, 2.0, 4.0, 1.0, 1.0, 5.0, 5)
    assert stats.summarize([7.0]).spread == 0
    assert stats.paired_ratios([2.0, 3.0], [1.0, 2.0]) == [2.0, 1.5]
    assert stats.geomean([2.0, 8.0]) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        stats.summarize([])


@pytest.mark.timeout(10)
def test_number_formats() -> None:
    assert report.format_time(0.0123, 0.0004) == "12.3 ms ±0.4"
    assert report.format_time(2.5e-5) == "25.0 µs"
    assert report.format_time(1.5) == "1.50 s"
    assert report.format_rate(98832, 2100) == "98.8k/s ±2.1"
    assert report.format_rate(1_270_000) == "1.27M/s"
    assert report.format_bytes(2_831_155) == "2.70 MiB"


@pytest.mark.timeout(10)
def test_progress_styles() -> None:
    tty = io.StringIO()
    p = Progress(4, tty, tty=True)
    p.phase("cpu, round 1/2")
    p.step("cpu/fib · threads ×2")
    p.close()
    assert "\r" in tty.getvalue() and "\n" not in tty.getvalue()

    plain = io.StringIO()
    p = Progress(4, plain, tty=False)
    p.phase("cpu, round 1/2")
    for _ in range(4):
        p.step("ignored on a pipe")
    p.close()
    assert "\r" not in plain.getvalue()
    assert plain.getvalue().count("\n") == 1 and "cpu, round 1/2" in plain.getvalue()


@pytest.mark.timeout(10)
def test_contenders_listed_even_when_unavailable() -> None:
    names = [c.name for c in discover()]
    assert names[:3] == ["serial", "threads", "processes"]
    assert "multigil" in names and "stdlib-interpreters" in names
    every = [c.name for c in discover(all_start_methods=True)]
    assert {"processes-spawn"} <= set(every) or "spawn" in next(
        c.label for c in discover() if c.name == "processes"
    )


@pytest.mark.timeout(10)
def test_threads_are_labelled_free_threaded_without_a_gil(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    threads = next(c for c in discover() if c.name == "threads")
    assert threads.label == "threads (free-threaded)"


@pytest.mark.timeout(60)
def test_memory_is_skipped_where_proc_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from multigil._bench import runner

    monkeypatch.setattr(runner, "pss_bytes", lambda pid="self": None)
    contenders = [c for c in discover() if c.name in ("serial", "threads")]
    results = run_suite(suite.resolve(["memory", "submit"]), contenders, _tiny_config())
    assert "smaps_rollup" in results.workload_notes["memory/idle-worker"]
    assert not any(k[1] == "memory/idle-worker" for k in results.samples)
    assert results.samples[("threads", "tiny/submit", 2)]
    assert "memory/idle-worker: skipped" in report.render(results)
