#!/usr/bin/env python3
"""Benchmark multigil.InterpreterPoolExecutor against the standard library.

Peers, all in the same run, interleaved round by round (medians reported):
ThreadPoolExecutor, ProcessPoolExecutor with fork, forkserver and spawn, and
concurrent.futures.InterpreterPoolExecutor where the running Python has it
(3.14+).

What is measured (2 workers unless --workers says otherwise):

  round trip   submit(noop).result() on a warm pool, µs a call
  tiny map     tasks/s through map(abs, range(N)) with each executor's default
               chunking (stdlib: chunksize=1; multigil: automatic)
  chunked map  the same with chunksize=ceil(N / (4 * workers)) where the
               executor uses chunksize (ProcessPool), else as above
  speed-up     serial time / pool time for 4 * workers calls of fib(n),
               pure-Python CPU work (serial measured right before each pool)
  ready        constructor to first result of submit(noop), ms, fresh pool
  PSS/worker   proportional set size an idle, warm worker adds
               (/proc/*/smaps_rollup of this process and its children)

and, for the ratio target, the time to create one interpreter
(multigil.interpreters.create()).

Usage:
  python benchmarks/bench_executor.py [--rounds 5] [--workers 2] [--json out.json]

A script, not a test: it prints a table and checks it against the targets
of docs/executor.md, but never fails.
"""

from __future__ import annotations

# Only light imports up here: every worker imports this module for its
# workloads (the rest is imported where it is used, in the main process).
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import concurrent.futures as cf
    from collections.abc import Callable
    from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

# Workloads live in this module, imported by name ("bench_executor.fib") in
# every worker: processes started by spawn, and interpreters, import it
# instead of re-running the script.
if __name__ == "__main__":
    import bench_executor as tasks  # noqa: F401  (this very file, as a module)


def noop() -> None:
    return None


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


# ---------------------------------------------------------------- peers --

def make_peers(workers: int) -> dict[str, Callable[[], cf.Executor]]:
    import concurrent.futures as cf
    import multiprocessing as mp

    import multigil

    peers: dict[str, Callable[[], cf.Executor]] = {
        "multigil": lambda: multigil.InterpreterPoolExecutor(workers),
        "ThreadPool": lambda: cf.ThreadPoolExecutor(workers),
    }
    for method in ("fork", "forkserver", "spawn"):
        if method in mp.get_all_start_methods():
            ctx = mp.get_context(method)
            peers[f"ProcessPool({method})"] = (
                lambda ctx=ctx: cf.ProcessPoolExecutor(workers, mp_context=ctx))
    stdlib_ipe = getattr(cf, "InterpreterPoolExecutor", None)
    if stdlib_ipe is not None:
        peers["stdlib InterpreterPool"] = lambda: stdlib_ipe(workers)
    return peers


def uses_chunksize(name: str) -> bool:
    return name.startswith("ProcessPool") or name == "multigil"


# ------------------------------------------------------------- measures --

def measure_ready(make: Callable[[], cf.Executor]) -> tuple[float, cf.Executor]:
    t0 = time.perf_counter()
    ex = make()
    ex.submit(tasks.noop).result()
    return time.perf_counter() - t0, ex


def warm_all(ex: cf.Executor, workers: int) -> None:
    """Make sure every worker exists and ran something."""
    list(ex.map(time.sleep, [0.02] * (2 * workers)))


def measure_round_trip(ex: cf.Executor, n: int) -> float:
    fn = tasks.noop
    for _ in range(min(n, 50)):
        ex.submit(fn).result()
    t0 = time.perf_counter()
    for _ in range(n):
        ex.submit(fn).result()
    return (time.perf_counter() - t0) / n


def measure_map(ex: cf.Executor, n: int, chunksize: int | None) -> float:
    kwargs = {} if chunksize is None else {"chunksize": chunksize}
    t0 = time.perf_counter()
    total = 0
    for r in ex.map(abs, range(n), **kwargs):
        total += r
    elapsed = time.perf_counter() - t0
    assert total == n * (n - 1) // 2
    return n / elapsed


def measure_cpu(ex: cf.Executor, n: int, calls: int) -> float:
    t0 = time.perf_counter()
    list(ex.map(tasks.fib, [n] * calls, chunksize=1))
    return time.perf_counter() - t0


def serial_cpu(n: int, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fib(n)
    return time.perf_counter() - t0


def interp_create_time() -> float:
    from multigil import interpreters

    t0 = time.perf_counter()
    it = interpreters.create()
    elapsed = time.perf_counter() - t0
    it.close()
    return elapsed


def pss_kib(pid: int | str = "self") -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendant_pids() -> set[int]:
    """This process's children, their children, ... (forkserver workers are
    children of the fork server)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
    found: set[int] = set()
    frontier = {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier} - found
        found |= frontier
    return found


def measure_pss(make: Callable[[], cf.Executor], workers: int) -> float:
    """KiB of PSS an idle warm worker adds."""
    import gc

    gc.collect()
    before_children = descendant_pids()
    before = pss_kib()
    ex = make()
    try:
        warm_all(ex, workers)
        gc.collect()
        time.sleep(0.1)  # let the workers go idle
        total = pss_kib() - before
        for pid in descendant_pids() - before_children:
            total += pss_kib(pid)
    finally:
        ex.shutdown(wait=True)
    return total / workers


# ----------------------------------------------------------------- main --

METRICS = ("round_trip_us", "tiny_map_per_s", "chunked_map_per_s", "speedup", "ready_ms",
           "pss_per_worker_mib")


def run(rounds: int, workers: int, quick: bool) -> dict[str, Any]:
    peers = make_peers(workers)
    samples: dict[str, dict[str, list[float]]] = {p: {m: [] for m in METRICS} for p in peers}
    extra: dict[str, list[float]] = {"interp_create_ms": [], "serial_cpu_s": []}
    fib_n = 22 if quick else 25
    calls = 4 * workers
    for r in range(rounds):
        print(f"round {r + 1}/{rounds} ...", file=sys.stderr, flush=True)
        extra["interp_create_ms"].append(interp_create_time() * 1e3)
        order = list(peers)
        if r % 2:
            order.reverse()  # interleave: nobody always goes first
        for name in order:
            make = peers[name]
            s = samples[name]
            ready, ex = measure_ready(make)
            s["ready_ms"].append(ready * 1e3)
            try:
                warm_all(ex, workers)
                slow = name.startswith("ProcessPool") or name.startswith("stdlib")
                s["round_trip_us"].append(measure_round_trip(ex, 300 if slow else 2000) * 1e6)
                if name == "multigil":
                    n_tiny = 200_000 if quick else 1_000_000
                elif name.startswith("ProcessPool"):
                    n_tiny = 2_000 if quick else 5_000
                else:
                    n_tiny = 10_000 if quick else 40_000
                s["tiny_map_per_s"].append(measure_map(ex, n_tiny, None))
                if uses_chunksize(name):
                    import math

                    n_chunked = 200_000 if quick else 1_000_000
                    chunk = None if name == "multigil" else math.ceil(n_chunked / (4 * workers))
                    s["chunked_map_per_s"].append(measure_map(ex, n_chunked, chunk))
                # the serial baseline right before, paired: the machine's speed drifts
                serial = serial_cpu(fib_n, calls)
                extra["serial_cpu_s"].append(serial)
                s["speedup"].append(serial / measure_cpu(ex, fib_n, calls))
            finally:
                ex.shutdown(wait=True)
    # memory: once per peer, more workers for resolution
    mem_workers = max(workers, 4)
    for name, _ in make_peers(mem_workers).items():
        print(f"memory: {name} ...", file=sys.stderr, flush=True)
        samples[name]["pss_per_worker_mib"].append(
            measure_pss(make_peers(mem_workers)[name], mem_workers) / 1024)
    return {"samples": samples, "extra": extra, "workers": workers, "rounds": rounds,
            "fib_n": fib_n, "mem_workers": mem_workers}


def median(xs: list[float]) -> float | None:
    import statistics

    return statistics.median(xs) if xs else None


def machine() -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cpus = getattr(os, "process_cpu_count", os.cpu_count)()
    try:
        load = "load %.1f" % os.getloadavg()[0]
    except OSError:
        load = ""
    return (f"{platform.python_implementation()} {platform.python_version()}, {platform.system()} "
            f"{platform.release()}, {cpus} CPUs ({cpu}), {load}")


def report(res: dict[str, Any]) -> str:
    samples = res["samples"]
    med = {p: {m: median(v) for m, v in d.items()} for p, d in samples.items()}
    lines = [f"machine: {machine()}",
             f"workers: {res['workers']}, rounds: {res['rounds']} (medians), "
             f"CPU work: {4 * res['workers']} x fib({res['fib_n']}), "
             f"PSS with {res['mem_workers']} workers",
             ""]
    head = ("| executor | round trip µs | tiny map /s | chunked map /s | CPU speed-up "
            "| ready ms | PSS/worker MiB |")
    lines += [head, "|---|---:|---:|---:|---:|---:|---:|"]

    def fmt(v: float | None, spec: str) -> str:
        return "n/a" if v is None else format(v, spec)

    for p, m in med.items():
        lines.append(f"| {p} | {fmt(m['round_trip_us'], '.1f')} | {fmt(m['tiny_map_per_s'], ',.0f')} "
                     f"| {fmt(m['chunked_map_per_s'], ',.0f')} | {fmt(m['speedup'], '.2f')}x "
                     f"| {fmt(m['ready_ms'], '.1f')} | {fmt(m['pss_per_worker_mib'], '.2f')} |")
    create = median(res["extra"]["interp_create_ms"]) or float("nan")
    lines += ["", f"one interpreter's creation: {create:.1f} ms; serial CPU work: "
              f"{median(res['extra']['serial_cpu_s']):.3f} s", ""]

    mg = med["multigil"]
    best_proc = max((m["speedup"] or 0) for p, m in med.items() if p.startswith("ProcessPool"))
    checks = [
        ("round trip <= ThreadPool's", mg["round_trip_us"], med["ThreadPool"]["round_trip_us"],
         lambda a, b: a <= b, "{:.1f} µs vs {:.1f} µs"),
        ("tiny map >= 1,000,000/s", mg["tiny_map_per_s"], 1e6, lambda a, b: a >= b,
         "{:,.0f}/s vs {:,.0f}/s"),
        ("CPU speed-up >= 0.95 x best ProcessPool", mg["speedup"], 0.95 * best_proc,
         lambda a, b: a >= b, "{:.2f}x vs {:.2f}x"),
        ("ready <= 1.5 x interpreter creation", mg["ready_ms"], 1.5 * create,
         lambda a, b: a <= b, "{:.1f} ms vs {:.1f} ms"),
        ("PSS per idle worker <= 3 MiB", mg["pss_per_worker_mib"], 3.0, lambda a, b: a <= b,
         "{:.2f} MiB vs {:.2f} MiB"),
    ]
    lines.append("targets:")
    for label, a, b, ok, spec in checks:
        if a is None or b is None:
            continue
        lines.append(f"  [{'ok' if ok(a, b) else 'MISS'}] {label}: " + spec.format(a, b))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import warnings

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="smaller inputs (a smoke run)")
    ap.add_argument("--json", metavar="PATH", help="write every sample as JSON ('-': stdout)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads alive
    res = run(args.rounds, args.workers, args.quick)
    res["machine"] = machine()
    text = report(res)
    if args.json == "-":
        json.dump(res, sys.stdout, indent=1)
        print()
        print(text, file=sys.stderr)
    else:
        print(text)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
