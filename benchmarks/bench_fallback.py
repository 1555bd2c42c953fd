#!/usr/bin/env python3
"""InterpreterPoolExecutor(fallback="process") against the pools it combines.

    python benchmarks/bench_fallback.py [--workers N] [--rounds 5] [--json PATH]

Every round measures each peer in turn (interleaved; medians, min-max):

  per task     tasks that need numpy (a module-level `import numpy`; the
               function returns its argument), on warm pools, the decision
               cached: a plain forkserver ProcessPoolExecutor against the
               fallback pool.  "latency": submit(f, i).result() one at a
               time, the median task, µs; "throughput": 2,000 submits,
               then wait for all, µs a task; and the CPU time this process spent a task
               (its threads, not the worker processes), which load from
               other jobs moves less than wall-clock time
  first task   the first task of a function in a warm fallback pool: the
               attempt in an interpreter that fails, then the process
  mixed        a job of pure-Python tasks (fib) and numpy tasks (np_work, which
               holds the GIL), submitted one by one, interleaved: the fallback
               pool, a forkserver ProcessPoolExecutor alone, a
               ThreadPoolExecutor alone (the two pools that can run all of
               it), and the interpreter pool for the pure tasks followed by the
               process pool for the numpy tasks ("one after the other");
               serial is the same calls in a loop, run right before

Targets (docs/executor.md): once the decision is cached, a fallen-back task
costs <= 1.2x a task of a plain forkserver ProcessPoolExecutor (the median of
the rounds' ratios: in each round the two pools run back to back); the mixed
job finishes faster than either pool alone.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from functools import partial
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _engine_tasks as pure  # noqa: E402
import _fallback_tasks as numpy_tasks  # noqa: E402
from _output import finish, verdict  # noqa: E402
from bench_executor import machine  # noqa: E402

LATENCY_TASKS = 300
THROUGHPUT_TASKS = 2000
MIXED_PEERS = ("fallback", "processes", "threads", "one after the other")


def process_pool(workers: int) -> Any:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))


def warm(pool: Any, workers: int) -> None:
    """Every worker started and numpy imported in each process."""
    for f in [pool.submit(numpy_tasks.np_work, 1) for _ in range(4 * workers)]:
        f.result()
    for f in [pool.submit(pure.fib, 5) for _ in range(4 * workers)]:
        f.result()


def cpu_s() -> float:
    """CPU seconds this process used so far (its threads; not its children)."""
    t = os.times()
    return t.user + t.system


def latency(pool: Any) -> float:
    """The median time of a task, submitted and waited for one at a time (the
    median: a burst of load from elsewhere on the machine hits a few tasks)."""
    times = []
    for i in range(LATENCY_TASKS):
        t0 = time.perf_counter()
        assert pool.submit(numpy_tasks.np_noop, i).result() == i
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def throughput(pool: Any) -> float:
    t0 = time.perf_counter()
    futures = [pool.submit(numpy_tasks.np_noop, i) for i in range(THROUGHPUT_TASKS)]
    assert [f.result() for f in futures] == list(range(THROUGHPUT_TASKS))
    return (time.perf_counter() - t0) / THROUGHPUT_TASKS


def mixed_job(n_pure: int, n_numpy: int, fib_n: int, steps: int) -> list[tuple[Any, int]]:
    """The mixed job's calls, the numpy ones spread evenly: (function, argument)."""
    total = n_pure + n_numpy
    return [(numpy_tasks.np_work, steps) if (i + 1) * n_numpy // total > i * n_numpy // total
            else (pure.fib, fib_n) for i in range(total)]


def run_job(pool: Any, calls: list[tuple[Any, int]]) -> tuple[float, list[int]]:
    t0 = time.perf_counter()
    futures = [pool.submit(f, x) for f, x in calls]
    out = [f.result() for f in futures]
    return time.perf_counter() - t0, out


def one_after_the_other(interpreters: Any, processes: Any,
                        calls: list[tuple[Any, int]]) -> tuple[float, list[int]]:
    """Each pool alone on its part, as two jobs: the pure tasks in the
    interpreters, then the numpy tasks in the processes."""
    t0 = time.perf_counter()
    out: list[Any] = [None] * len(calls)
    for pool, kind in ((interpreters, pure.fib), (processes, numpy_tasks.np_work)):
        part = [(i, pool.submit(f, x)) for i, (f, x) in enumerate(calls) if f is kind]
        for i, fut in part:
            out[i] = fut.result()
    return time.perf_counter() - t0, out


def run(workers: int, rounds: int, n_pure: int, n_numpy: int, fib_n: int,
        steps: int) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    from multigil import InterpreterPoolExecutor

    calls = mixed_job(n_pure, n_numpy, fib_n, steps)
    expected = [f(x) for f, x in calls]
    samples: dict[str, list[float]] = {k: [] for k in (
        *(f"{pool}_{measure}{cpu}" for pool in ("process", "fallback")
          for measure in ("latency", "throughput") for cpu in ("", "_cpu")),
        "first_task", "serial", *MIXED_PEERS)}
    speedups: dict[str, list[float]] = {k: [] for k in MIXED_PEERS}

    fallback = InterpreterPoolExecutor(workers, fallback="process")
    processes = process_pool(workers)
    interpreters = InterpreterPoolExecutor(workers)   # strict: the pure part only
    threads = ThreadPoolExecutor(workers)
    try:
        warm(fallback, workers)
        warm(processes, workers)
        warm(threads, workers)
        for f in [interpreters.submit(pure.fib, 5) for _ in range(4 * workers)]:
            f.result()
        assert fallback.stats().fallback_functions, "numpy tasks did not fall back"
        for r in range(rounds):
            print(f"round {r + 1}/{rounds} ...", file=sys.stderr, flush=True)
            flip = r % 2 == 1
            cost_order = [("process", processes), ("fallback", fallback)]
            for name, pool in reversed(cost_order) if flip else cost_order:
                for measure, task_cost, n in (("latency", latency, LATENCY_TASKS),
                                              ("throughput", throughput, THROUGHPUT_TASKS)):
                    c0 = cpu_s()
                    samples[f"{name}_{measure}"].append(task_cost(pool))
                    samples[f"{name}_{measure}_cpu"].append((cpu_s() - c0) / n)
            # the first task of a function: a partial with a new argument is
            # a new function for the decisions
            first = partial(numpy_tasks.np_noop, r)
            t0 = time.perf_counter()
            assert fallback.submit(first).result() == r
            samples["first_task"].append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            assert [f(x) for f, x in calls] == expected
            serial = time.perf_counter() - t0
            samples["serial"].append(serial)
            order = list(MIXED_PEERS)[::-1] if flip else list(MIXED_PEERS)
            for peer in order:
                if peer == "one after the other":
                    took, out = one_after_the_other(interpreters, processes, calls)
                else:
                    pool = {"fallback": fallback, "processes": processes,
                            "threads": threads}[peer]
                    took, out = run_job(pool, calls)
                assert out == expected, peer
                samples[peer].append(took)
                speedups[peer].append(serial / took)
        stats = fallback.stats()._asdict()
    finally:
        for pool in (fallback, processes, interpreters, threads):
            pool.shutdown(wait=True)
    return {"workers": workers, "rounds": rounds, "n_pure": n_pure, "n_numpy": n_numpy,
            "fib": fib_n, "steps": steps, "samples": samples, "speedups": speedups,
            "fallback_stats": stats}


def paired_ratio(samples: dict[str, list[float]], key: str, peer: str) -> float:
    """The median of each round's `key` / `peer`: the two measured back to
    back, so that a slow spell of the machine moves both."""
    return statistics.median(a / b for a, b in zip(samples[key], samples[peer]))


def report(res: dict[str, Any]) -> str:
    s = res["samples"]

    def med(key: str) -> float:
        return statistics.median(s[key])

    def rng(key: str, scale: float, spec: str) -> str:
        v = s[key]
        return f"{format(min(v) * scale, spec)}-{format(max(v) * scale, spec)}"

    lines = [f"machine: {machine()}",
             f"workers={res['workers']}, {res['rounds']} interleaved rounds (median, min-max)",
             "",
             "per task (numpy tasks, decision cached), µs:",
             "",
             "| pool | latency | throughput | main-process CPU a task: latency, throughput |",
             "|---|---:|---:|---:|"]
    for name, label in (("process", "ProcessPoolExecutor (forkserver)"),
                        ("fallback", 'InterpreterPoolExecutor(fallback="process")')):
        lines.append(f"| {label} | {med(name + '_latency') * 1e6:.0f} "
                     f"({rng(name + '_latency', 1e6, '.0f')}) "
                     f"| {med(name + '_throughput') * 1e6:.0f} "
                     f"({rng(name + '_throughput', 1e6, '.0f')}) "
                     f"| {med(name + '_latency_cpu') * 1e6:.0f}, "
                     f"{med(name + '_throughput_cpu') * 1e6:.0f} |")
    lines += ["", f"first task of a function (one failed attempt in an interpreter, then the "
                  f"process): {med('first_task') * 1e3:.2f} ms ({rng('first_task', 1e3, '.2f')})",
              "",
              f"mixed job: {res['n_pure']} x fib({res['fib']}) and {res['n_numpy']} x "
              f"np_work({res['steps']}), submitted one by one; serial {med('serial'):.2f} s",
              "",
              "| peer | seconds | speed-up over serial |",
              "|---|---:|---:|"]
    for peer in MIXED_PEERS:
        sp = statistics.median(res["speedups"][peer])
        lines.append(f"| {peer} | {med(peer):.2f} ({rng(peer, 1, '.2f')}) | {sp:.2f}x |")
    lat, thr = (paired_ratio(s, "fallback_" + measure, "process_" + measure)
                for measure in ("latency", "throughput"))
    alone = min(med("processes"), med("threads"))
    lines += ["", f"fallback pool stats: {res['fallback_stats']}", "", "targets:",
              verdict(lat <= 1.2, f"latency <= 1.2 x ProcessPool's: {lat:.2f}x"),
              verdict(thr <= 1.2, f"throughput cost <= 1.2 x ProcessPool's: {thr:.2f}x"),
              verdict(med("fallback") < alone,
                      f"mixed job faster than either pool alone: {med('fallback'):.2f} s vs "
                      f"{med('processes'):.2f} s (processes), {med('threads'):.2f} s (threads)")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int,
                    default=getattr(os, "process_cpu_count", os.cpu_count)() or 2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pure", type=int, default=2000, help="pure-Python tasks in the mixed job")
    ap.add_argument("--numpy", type=int, default=200, help="numpy tasks in the mixed job")
    ap.add_argument("--fib", type=int, default=15)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    res = run(args.workers, args.rounds, args.pure, args.numpy, args.fib, args.steps)
    return finish(res, report(res), args.json)


if __name__ == "__main__":
    sys.exit(main())
