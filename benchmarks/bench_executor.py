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
(multigil.interpreters.create()).  That is the "pools" section; the others:

  bytes        16 MiB of bytes as an argument, a map item and a result,
               against one local copy (bytearray(payload)) in the same round;
               multigil and, on 3.14+, the stdlib's InterpreterPoolExecutor
  recycle      RSS growth over 300 tasks with max_tasks_per_worker=1
  lazy         map(abs, range(150,000), buffersize=10,000): a fresh pool's
               first call against its second

Usage:
  python benchmarks/bench_executor.py [--rounds 5] [--workers 2] [--json out.json]
                                      [--sections pools,bytes,recycle,lazy]

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


def make_payload(size: int) -> None:
    """Initializer: a `size`-byte bytes object in the worker's __main__."""
    import __main__

    __main__.payload = bytes(range(256)) * (size // 256)


def payload_result() -> bytes:
    """The worker's payload as a result: what a large result costs, no more."""
    import __main__

    data: bytes = __main__.payload
    return data


def import_json(x: int) -> int:
    """A task that imports a module, which every recycled worker imports again."""
    import json

    return len(json.dumps([x] * 10))


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


# ------------------------------------------------ large bytes: one copy --

PAYLOAD = 16 << 20


def byte_peers(workers: int) -> dict[str, Callable[[], cf.Executor]]:
    """Pools whose workers each hold a PAYLOAD-byte bytes (for the result)."""
    import concurrent.futures as cf

    import multigil

    init = {"initializer": tasks.make_payload, "initargs": (PAYLOAD,)}
    peers: dict[str, Callable[[], cf.Executor]] = {
        "multigil": lambda: multigil.InterpreterPoolExecutor(workers, **init)}
    stdlib_ipe = getattr(cf, "InterpreterPoolExecutor", None)
    if stdlib_ipe is not None:
        peers["stdlib InterpreterPool"] = lambda: stdlib_ipe(workers, **init)
    return peers


def run_bytes(rounds: int, workers: int, calls: int = 5) -> dict[str, Any]:
    """16 MiB through each pool, against one local copy of it, interleaved.

    Per round and contender, the mean of `calls` calls of: ``submit(len,
    payload)`` (an argument), ``map(len, [payload])`` (a map item),
    ``submit(payload_result)`` (a result the worker already holds); and
    ``bytearray(payload)`` in this thread, the floor of any transfer that
    copies the bytes once.
    """
    payload = bytes(range(256)) * (PAYLOAD // 256)
    pools = {name: make() for name, make in byte_peers(workers).items()}
    ops: dict[str, Callable[[cf.Executor], object]] = {
        "argument": lambda ex: ex.submit(len, payload).result(),
        "map item": lambda ex: list(ex.map(len, [payload])),
        "result": lambda ex: ex.submit(tasks.payload_result).result(),
    }
    samples: dict[str, list[float]] = {"one local copy": []}
    try:
        for ex in pools.values():
            warm_all(ex, workers)
            for op in ops.values():
                op(ex)
        for r in range(rounds):
            print(f"16 MiB, round {r + 1}/{rounds} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            for _ in range(calls):
                bytearray(payload)
            samples["one local copy"].append((time.perf_counter() - t0) / calls)
            names = list(pools) if r % 2 == 0 else list(pools)[::-1]
            for name in names:
                for what, op in ops.items():
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        op(pools[name])
                    samples.setdefault(f"{name}: {what}", []).append(
                        (time.perf_counter() - t0) / calls)
    finally:
        for ex in pools.values():
            ex.shutdown(wait=True)
    return {"samples": samples, "rounds": rounds, "payload": PAYLOAD}


def report_bytes(res: dict[str, Any]) -> str:
    samples = res["samples"]
    floor = samples["one local copy"]
    lines = [f"{res['payload'] >> 20} MiB of bytes, median of {res['rounds']} interleaved rounds; "
             "x: per-round ratio to one local copy (bytearray(payload))", "",
             "| transfer | ms | x one copy |", "|---|---:|---:|"]
    for name, xs in samples.items():
        ratio = median([x / f for x, f in zip(xs, floor)])
        lines.append(f"| {name} | {median(xs) * 1e3:.2f} | {ratio:.2f}x |")
    worst = max(median([x / f for x, f in zip(xs, floor)]) or 0
                for name, xs in samples.items() if name.startswith("multigil"))
    lines += ["", "targets:",
              f"  [{'ok' if worst <= 1.3 else 'MISS'}] multigil <= 1.3 x one local copy: "
              f"{worst:.2f}x at worst"]
    return "\n".join(lines)


# ------------------------------------------------- recycling: flat memory --

def rss_mib() -> float:
    from _output import rss_bytes

    return rss_bytes() / (1 << 20)


def run_recycle(recycles: int = 300, workers: int = 2) -> dict[str, Any]:
    """RSS growth over `recycles` tasks with max_tasks_per_worker=1, each
    importing a module: every task meets a fresh worker."""
    import gc

    import multigil

    with multigil.InterpreterPoolExecutor(workers, max_tasks_per_worker=1) as ex:
        list(ex.map(tasks.import_json, range(20), chunksize=1))     # warm-up
        gc.collect()
        before = rss_mib()
        t0 = time.perf_counter()
        list(ex.map(tasks.import_json, range(recycles), chunksize=1))
        elapsed = time.perf_counter() - t0
        gc.collect()
        after = rss_mib()
    return {"recycles": recycles, "workers": workers, "rss_before_mib": before,
            "rss_after_mib": after, "ms_per_recycle": elapsed / recycles * 1e3,
            "how": "reset" if sys.version_info < (3, 14) else "new interpreter"}


def report_recycle(res: dict[str, Any]) -> str:
    growth = res["rss_after_mib"] - res["rss_before_mib"]
    return "\n".join([
        f"recycling: {res['recycles']} tasks, max_tasks_per_worker=1, {res['workers']} workers "
        f"({res['how']} each time)",
        f"  RSS {res['rss_before_mib']:.1f} -> {res['rss_after_mib']:.1f} MiB "
        f"({growth:+.1f} MiB), {res['ms_per_recycle']:.1f} ms per task",
        f"  [{'ok' if growth <= 30 else 'MISS'}] RSS growth <= 30 MiB: {growth:+.1f} MiB"])


# ------------------------------------- map(buffersize): the first call --

def _timed_map(ex: cf.Executor, n: int, buffersize: int) -> tuple[float, float]:
    """(seconds in all, seconds after the first result) of a lazy map."""
    t0 = time.perf_counter()
    it = ex.map(abs, range(n), buffersize=buffersize)  # type: ignore[call-arg]
    total = next(it)
    t1 = time.perf_counter()
    for r in it:
        total += r
    t2 = time.perf_counter()
    assert total == n * (n - 1) // 2
    return t2 - t0, t2 - t1


def run_lazy(rounds: int, workers: int, n: int = 150_000,
             buffersize: int = 10_000) -> dict[str, Any]:
    """Per round, a fresh pool's first lazy map and its second one."""
    import multigil

    samples: dict[str, list[float]] = {"first": [], "first after its first result": [],
                                       "second": []}
    for r in range(rounds):
        print(f"lazy map, round {r + 1}/{rounds} ...", file=sys.stderr, flush=True)
        with multigil.InterpreterPoolExecutor(workers) as ex:
            first, first_warm = _timed_map(ex, n, buffersize)
            second, _ = _timed_map(ex, n, buffersize)
        samples["first"].append(n / first)
        samples["first after its first result"].append((n - 1) / first_warm)
        samples["second"].append(n / second)
    return {"samples": samples, "n": n, "buffersize": buffersize, "rounds": rounds}


def report_lazy(res: dict[str, Any]) -> str:
    s = res["samples"]
    second = s["second"]
    lines = [f"map(abs, range({res['n']:,}), buffersize={res['buffersize']:,}) on a fresh pool, "
             f"{res['rounds']} rounds (items/s, median; x: per-round ratio to the second call)",
             "", "| call | items/s | x second call |", "|---|---:|---:|"]
    for name, xs in s.items():
        ratio = median([x / b for x, b in zip(xs, second)]) or 0.0
        lines.append(f"| {name} | {median(xs):,.0f} | {ratio:.2f}x |")
    warm = median([x / b for x, b in zip(s["first after its first result"], second)]) or 0.0
    lines += ["", "targets:",
              f"  [{'ok' if warm >= 0.8 else 'MISS'}] first call >= 0.8 x the second's "
              f"throughput (from its first result; before it, the workers start): {warm:.2f}x"]
    return "\n".join(lines)


# ----------------------------------------------------------------- main --

SECTIONS = ("pools", "bytes", "recycle", "lazy")
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
    lines = [f"workers: {res['workers']}, rounds: {res['rounds']} (medians), "
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
    rt_ratio = median([a / b for a, b in zip(samples["multigil"]["round_trip_us"],
                                             samples["ThreadPool"]["round_trip_us"])])
    lines.append(f"round trip, multigil / ThreadPool, median of per-round ratios: "
                 f"{rt_ratio:.2f}x (goal: 0.5x)")
    lines.append("")
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
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"what to run, comma-separated (default: all of {','.join(SECTIONS)})")
    args = ap.parse_args(argv)
    sections = [x for x in args.sections.split(",") if x]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections: {', '.join(sorted(unknown))}")
    warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads alive
    res: dict[str, Any] = {"machine": machine()}
    texts = [f"machine: {res['machine']}"]
    if "pools" in sections:
        res["pools"] = run(args.rounds, args.workers, args.quick)
        texts.append(report(res["pools"]))
    if "bytes" in sections:
        res["bytes"] = run_bytes(args.rounds, args.workers)
        texts.append(report_bytes(res["bytes"]))
    if "recycle" in sections:
        res["recycle"] = run_recycle(30 if args.quick else 300, args.workers)
        texts.append(report_recycle(res["recycle"]))
    if "lazy" in sections:
        res["lazy"] = run_lazy(args.rounds, args.workers, 30_000 if args.quick else 150_000)
        texts.append(report_lazy(res["lazy"]))
    text = "\n\n".join(texts)
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
