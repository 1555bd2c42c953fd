#!/usr/bin/env python3
"""Per-task cost of script code: functions of __main__, lambdas, big globals.

The functions a script brings to a pool, each submitted again and again
(``submit(fn, i).result()`` on a warm pool, the functions taking turns task
by task; µs a task: the median task of a round, median of the rounds):

  importable   a function of an importable module (crosses by name)
  __main__     a function defined in this script
  lambda       a lambda of this script
  big global   a function of this script that reads BIG, a dict of 200,000
               entries (a process pool's worker has it from the fork or the
               re-import of the script; multigil sends it once)

and the first task of each on a fresh pool (ms), which includes sending a
function by value (multigil pickles it once; the first task pays for it).

Peers in the same run, interleaved round by round: multigil with the same
number of workers, ProcessPoolExecutor with fork (forked before any
interpreter exists: fork() with interpreters alive crashes the child) and
forkserver.  A process pool cannot take lambdas (pickle): n/a.

And importable callables that are not functions -- a builtin, a class, a
method descriptor, a class method, a functools.partial -- in multigil and a
ThreadPoolExecutor, against a function.

Targets (docs/benchmarks.md): after the first task, a __main__ function, a
lambda and the big-global function cost what the importable function costs
in multigil (<= 1.5x, same run); so does every importable callable.

Usage:
  python benchmarks/bench_script_tasks.py [--rounds 5] [--workers 2] [--tasks 300] [--json out.json]
"""

from __future__ import annotations

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _tasks  # noqa: E402  (after the path is set)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import concurrent.futures as cf
    from collections.abc import Callable
    from typing import Any

BIG = {i: i for i in range(200_000)}


def main_ident(x: Any) -> Any:
    return x


def big_global(x: Any) -> Any:
    return BIG[x % 200_000]


main_lambda = lambda x: x  # noqa: E731  (a lambda is the point)

KINDS: dict[str, Callable[[Any], Any]] = {
    "importable": _tasks.ident,
    "__main__": main_ident,
    "lambda": main_lambda,
    "big global": big_global,
}


def callables() -> dict[str, Callable[[Any], Any]]:
    """Importable callables that are not plain functions, each taking an int
    and returning one; a partial and a class method made anew each time."""
    import functools

    return {
        "function": _tasks.ident,
        "builtin": abs,
        "class": int,
        "method descriptor": int.__abs__,
        "class method": _tasks.Box.make,
        "partial": functools.partial(_tasks.add, 1),
    }


def make_peers(workers: int) -> dict[str, Callable[[], cf.Executor]]:
    import concurrent.futures as cf
    import multiprocessing as mp

    import multigil

    peers: dict[str, Callable[[], cf.Executor]] = {}
    for method in ("fork", "forkserver"):
        if method in mp.get_all_start_methods():
            ctx = mp.get_context(method)
            peers[f"ProcessPool({method})"] = (
                lambda ctx=ctx: cf.ProcessPoolExecutor(workers, mp_context=ctx))
    peers["multigil"] = lambda: multigil.InterpreterPoolExecutor(workers)
    peers["ThreadPool"] = lambda: cf.ThreadPoolExecutor(workers)
    return peers


def forget_sent() -> None:
    """Make multigil send the script's functions again (its sender keeps what
    it sent by content for the whole process): every round's first task
    then pays for pickling, as a fresh program's does."""
    from multigil import _pickler

    _pickler._by_content.clear()
    _pickler._cached_bytes = 0


def warm(ex: cf.Executor, fn: Callable[[Any], Any], workers: int) -> None:
    """Many tasks in flight at once: every worker gets (and rebuilds) `fn`."""
    for f in [ex.submit(fn, i) for i in range(8 * workers)]:
        f.result()


def per_task(ex: cf.Executor, fns: dict[str, Callable[[Any], Any]], n: int) -> dict[str, float]:
    """The median round trip of each function, taking turns task by task, so
    that they all meet the same load."""
    import statistics

    times: dict[str, list[float]] = {kind: [] for kind in fns}
    clock = time.perf_counter
    for i in range(n):
        for kind, fn in fns.items():
            t0 = clock()
            ex.submit(fn, i).result()
            times[kind].append(clock() - t0)
    return {kind: statistics.median(ts) for kind, ts in times.items()}


def run(rounds: int, workers: int, tasks: int) -> dict[str, Any]:
    peers = make_peers(workers)
    samples: dict[str, dict[str, dict[str, list[float]]]] = {
        p: {k: {"task_us": [], "first_ms": []} for k in KINDS} for p in peers}
    calls: dict[str, dict[str, list[float]]] = {
        p: {k: [] for k in callables()} for p in ("multigil", "ThreadPool")}
    # The fork pool is made, and its workers forked, before any interpreter.
    fork_pool = None
    if "ProcessPool(fork)" in peers:
        fork_pool = peers.pop("ProcessPool(fork)")()
        fork_pool.submit(_tasks.noop).result()
    try:
        for r in range(rounds):
            print(f"round {r + 1}/{rounds} ...", file=sys.stderr, flush=True)
            order = (["ProcessPool(fork)"] if fork_pool else []) + list(peers)
            if r % 2:
                order.reverse()
            for name in order:
                ex = fork_pool if name == "ProcessPool(fork)" else peers[name]()
                try:
                    if name != "ThreadPool":
                        measure(name, ex, samples[name], workers, tasks)
                    if name in calls:
                        warm(ex, _tasks.ident, workers)
                        for kind, seconds in per_task(ex, callables(), tasks).items():
                            calls[name][kind].append(seconds * 1e6)
                finally:
                    if ex is not fork_pool:
                        ex.shutdown(wait=True)
    finally:
        if fork_pool is not None:
            fork_pool.shutdown(wait=True)
    del samples["ThreadPool"]
    return {"samples": samples, "callables": calls, "workers": workers, "rounds": rounds,
            "tasks": tasks}


def measure(name: str, ex: cf.Executor, s: dict[str, dict[str, list[float]]], workers: int,
            tasks: int) -> None:
    import pickle

    warm(ex, _tasks.ident, workers)
    if name == "multigil":
        forget_sent()
    fns = {}
    for kind, fn in KINDS.items():
        if not name == "multigil":
            try:
                pickle.dumps(fn)
            except (pickle.PicklingError, AttributeError):
                continue  # a process pool cannot take it
        t0 = time.perf_counter()
        ex.submit(fn, 0).result()
        s[kind]["first_ms"].append((time.perf_counter() - t0) * 1e3)
        warm(ex, fn, workers)
        fns[kind] = fn
    n = tasks if name == "multigil" else max(50, tasks // 3)
    for kind, seconds in per_task(ex, fns, n).items():
        s[kind]["task_us"].append(seconds * 1e6)


def median(xs: list[float]) -> float | None:
    import statistics

    return statistics.median(xs) if xs else None


def report(res: dict[str, Any]) -> str:
    from bench_executor import machine

    samples = res["samples"]
    med = {p: {k: {m: median(v) for m, v in d.items()} for k, d in ks.items()}
           for p, ks in samples.items()}
    lines = [f"machine: {machine()}",
             f"workers: {res['workers']}, rounds: {res['rounds']} (medians), "
             f"{res['tasks']} tasks a measure (process pools: a third)", ""]

    def fmt(v: float | None, spec: str) -> str:
        return "n/a" if v is None else format(v, spec)

    peers = list(med)
    lines.append("| function | " + " | ".join(f"{p} µs/task" for p in peers) + " | "
                 + " | ".join(f"{p} first ms" for p in peers) + " |")
    lines.append("|---|" + "---:|" * (2 * len(peers)))
    for kind in KINDS:
        cells = [fmt(med[p][kind]["task_us"], ".1f") for p in peers]
        cells += [fmt(med[p][kind]["first_ms"], ".2f") for p in peers]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    calls = {p: {k: median(v) for k, v in d.items()} for p, d in res["callables"].items()}
    lines += ["", "| callable | multigil µs/task | ThreadPool µs/task |", "|---|---:|---:|"]
    for kind in calls["multigil"]:
        lines.append(f"| {kind} | {fmt(calls['multigil'][kind], '.1f')} "
                     f"| {fmt(calls['ThreadPool'][kind], '.1f')} |")
    lines += ["", "targets:"]
    mg = med["multigil"]
    base = mg["importable"]["task_us"]
    for kind in ("__main__", "lambda", "big global"):
        got = mg[kind]["task_us"]
        if got is None or base is None:
            continue
        ratio = got / base
        lines.append(f"  [{'ok' if ratio <= 1.5 else 'MISS'}] {kind} <= 1.5 x importable, "
                     f"multigil: {got:.1f} µs vs {base:.1f} µs = {ratio:.2f}x")
    base = calls["multigil"]["function"]
    for kind, got in calls["multigil"].items():
        if kind == "function" or got is None or base is None:
            continue
        ratio = got / base
        lines.append(f"  [{'ok' if ratio <= 1.5 else 'MISS'}] {kind} <= 1.5 x a function, "
                     f"multigil: {got:.1f} µs vs {base:.1f} µs = {ratio:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import warnings

    from _output import finish

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tasks", type=int, default=300, help="tasks a measure (multigil)")
    ap.add_argument("--json", metavar="PATH", help="write every sample as JSON")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads alive
    res = run(args.rounds, args.workers, args.tasks)
    return finish(res, report(res), args.json)


if __name__ == "__main__":
    sys.exit(main())
