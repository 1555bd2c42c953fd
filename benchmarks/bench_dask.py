#!/usr/bin/env python3
"""Dask distributed: one worker process with interpreters against threads and
processes, all in the same run.

    python benchmarks/bench_dask.py [--workers N] [--rounds 5] [--fib 27] [--json PATH]

Three local clusters (``distributed.LocalCluster``, worker processes started
by Dask's nanny), alive together, take turns round by round (medians):

  threads      1 worker process, N threads (Dask's default executor)
  processes    N worker processes, 1 thread each
  multigil     1 worker process, N threads, multigil.dask.InterpreterPoolPlugin,
               the tasks annotated with executor="interpreters"

Workload: 4*N tasks of fib(n), pure-Python CPU work, submitted with
``client.map`` and gathered; speed-up = the same calls run serially in this
process right before, over the cluster's wall time.  Memory: the PSS of the
worker processes (``/proc/<pid>/smaps_rollup``), warm and idle, after the
rounds.  Also: the time each cluster took to start and run its first task.

Targets (docs/scaling.md): multigil reaches >= 0.9x the speed-up of N
single-threaded worker processes, with <= 1/2 their PSS.

Dask's profiler is off in every cluster (importing multigil.dask turns it
off: it reads all threads' frames, which crashes CPython next to running
interpreters), so all three pay the same bookkeeping.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _engine_tasks as tasks  # noqa: E402
from _output import finish  # noqa: E402
from bench_executor import machine as base_machine, pss_kib  # noqa: E402

CONTENDERS = ("threads", "processes", "multigil")


def start(name: str, workers: int) -> tuple[Any, Any, float]:
    """(cluster, client, seconds to start it and get a first task back)."""
    from distributed import Client, LocalCluster

    from multigil.dask import InterpreterPoolPlugin

    t0 = time.perf_counter()
    if name == "processes":
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
    else:
        cluster = LocalCluster(n_workers=1, threads_per_worker=workers, processes=True,
                               dashboard_address=":0")
    client = Client(cluster)
    if name == "multigil":
        client.register_plugin(InterpreterPoolPlugin())
    run_tasks(name, client, 0, workers)
    return cluster, client, time.perf_counter() - t0


def run_tasks(name: str, client: Any, n: int, count: int, tag: int = 0) -> float:
    import dask

    args = ([n] * count, [tag * count + i for i in range(count)])
    t0 = time.perf_counter()
    if name == "multigil":
        with dask.annotate(executor="interpreters"):
            futures = client.map(tasks.fib_task, *args, pure=False)
    else:
        futures = client.map(tasks.fib_task, *args, pure=False)
    results = client.gather(futures)
    elapsed = time.perf_counter() - t0
    assert results == [tasks.fib(n)] * count
    return elapsed


def serial(n: int, count: int) -> float:
    t0 = time.perf_counter()
    for _ in range(count):
        tasks.fib(n)
    return time.perf_counter() - t0


def worker_pss_mib(client: Any) -> float:
    pids = client.run(os.getpid).values()
    return sum(pss_kib(pid) for pid in pids) / 1024


def run(workers: int, rounds: int, n: int) -> dict[str, Any]:
    import multigil.dask  # noqa: F401  (profiling off before the clusters start)

    count = 4 * workers
    clusters: dict[str, tuple[Any, Any]] = {}
    startup: dict[str, float] = {}
    speedups: dict[str, list[float]] = {c: [] for c in CONTENDERS}
    walls: dict[str, list[float]] = {c: [] for c in CONTENDERS}
    serials: list[float] = []
    try:
        for name in CONTENDERS:
            print(f"starting {name} ...", file=sys.stderr, flush=True)
            cluster, client, took = start(name, workers)
            clusters[name] = (cluster, client)
            startup[name] = took
            run_tasks(name, client, n, count, tag=1)      # warm: imports, interpreters
        for r in range(rounds):
            print(f"round {r + 1}/{rounds} ...", file=sys.stderr, flush=True)
            order = list(CONTENDERS) if r % 2 == 0 else list(reversed(CONTENDERS))
            for name in order:
                base = serial(n, count)
                serials.append(base)
                wall = run_tasks(name, clusters[name][1], n, count, tag=r + 2)
                walls[name].append(wall)
                speedups[name].append(base / wall)
        time.sleep(0.5)  # idle
        pss = {name: worker_pss_mib(clusters[name][1]) for name in CONTENDERS}
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
    return {"workers": workers, "rounds": rounds, "fib": n, "tasks": count,
            "speedup": speedups, "wall_s": walls, "serial_s": serials,
            "pss_mib": pss, "startup_s": startup}


def machine() -> str:
    import dask
    import distributed

    return f"{base_machine()}; dask {dask.__version__}, distributed {distributed.__version__}"


def report(res: dict[str, Any]) -> str:
    med = {c: statistics.median(res["speedup"][c]) for c in CONTENDERS}
    spread = {c: (min(res["speedup"][c]), max(res["speedup"][c])) for c in CONTENDERS}
    n = res["workers"]
    desc = {"threads": f"1 process x {n} threads", "processes": f"{n} processes x 1 thread",
            "multigil": f"1 process x {n} threads, interpreters"}
    lines = [f"machine: {machine()}",
             f"{res['tasks']} tasks of fib({res['fib']}), {res['rounds']} interleaved rounds "
             f"(median, min-max); serial: {statistics.median(res['serial_s']):.3f} s",
             "",
             "| cluster | workers | speed-up vs serial | wall s | worker PSS MiB | start + first task s |",
             "|---|---|---:|---:|---:|---:|"]
    for c in CONTENDERS:
        lo, hi = spread[c]
        lines.append(f"| {c} | {desc[c]} | {med[c]:.2f}x ({lo:.2f}-{hi:.2f}) "
                     f"| {statistics.median(res['wall_s'][c]):.3f} | {res['pss_mib'][c]:.1f} "
                     f"| {res['startup_s'][c]:.2f} |")
    ratio = med["multigil"] / med["processes"]
    mem = res["pss_mib"]["multigil"] / res["pss_mib"]["processes"]
    lines += ["", "targets:",
              f"  [{'ok' if ratio >= 0.9 else 'MISS'}] speed-up >= 0.9 x processes': "
              f"{med['multigil']:.2f}x vs {med['processes']:.2f}x = {ratio:.2f}",
              f"  [{'ok' if mem <= 0.5 else 'MISS'}] PSS <= 1/2 processes': "
              f"{res['pss_mib']['multigil']:.1f} MiB vs {res['pss_mib']['processes']:.1f} MiB "
              f"= {mem:.2f}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=getattr(os, "process_cpu_count", os.cpu_count)() or 2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--fib", type=int, default=27, help="n of the fib(n) tasks")
    ap.add_argument("--json", metavar="PATH", help="also write every sample as JSON")
    args = ap.parse_args(argv)
    import logging

    logging.getLogger("distributed").setLevel(logging.WARNING)
    res = run(args.workers, args.rounds, args.fib)
    return finish(res, report(res), args.json)


if __name__ == "__main__":
    sys.exit(main())
