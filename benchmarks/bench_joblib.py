#!/usr/bin/env python3
"""joblib: the "multigil" backend against loky and threading, in the same run.

    python benchmarks/bench_joblib.py [--n-jobs N] [--rounds 5] [--fib 27] [--json PATH]

Every round measures each backend in turn (interleaved; medians, min-max):

  speed-up     Parallel(n_jobs=N) over 4*N calls of fib(n), pure-Python CPU
               work, warm workers; serial = the same calls in a plain loop,
               run right before
  start-up     the first Parallel call with cold workers: N calls of noop;
               loky's reusable executor and multigil's kept pools are shut
               down first (threading makes its threads every call)
  many small   Parallel(n_jobs=-1) over 100,000 calls of abs(), warm, calls/s,
               three samples a round; joblib's own cost per call (delayed(),
               batching, results) is shown by the sequential backend,
               measured the same way

Targets (docs/scaling.md): multigil >= 0.9x loky's speed-up, and faster than
loky at start-up and on the many small calls.
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
from bench_executor import machine as base_machine  # noqa: E402

BACKENDS = ("loky", "threading", "multigil")
SMALL_CALLS = 100_000
SMALL_REPEATS = 3


def cold(backend: str) -> None:
    """Shut down the workers a backend keeps between calls."""
    if backend == "loky":
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)
    elif backend == "multigil":
        import multigil.joblib

        multigil.joblib.shutdown()


def parallel(backend: str, n_jobs: int, calls: Any) -> tuple[float, list[Any]]:
    from joblib import Parallel

    t0 = time.perf_counter()
    out = Parallel(n_jobs=n_jobs, backend=backend)(calls)
    return time.perf_counter() - t0, out


def run(n_jobs: int, rounds: int, n: int) -> dict[str, Any]:
    import multigil.joblib  # noqa: F401  (registers the backend)
    from joblib import delayed

    count = 4 * n_jobs
    expected = [tasks.fib(n)] * count
    samples: dict[str, dict[str, list[float]]] = {
        b: {"speedup": [], "startup_s": [], "small_per_s": []} for b in BACKENDS}
    joblib_floor: list[float] = []
    for r in range(rounds):
        print(f"round {r + 1}/{rounds} ...", file=sys.stderr, flush=True)
        order = list(BACKENDS) if r % 2 == 0 else list(reversed(BACKENDS))
        for b in order:
            s = samples[b]
            cold(b)
            took, _ = parallel(b, n_jobs, (delayed(tasks.noop)(i) for i in range(n_jobs)))
            s["startup_s"].append(took)
            t0 = time.perf_counter()
            for _ in range(count):
                tasks.fib(n)
            base = time.perf_counter() - t0
            took, out = parallel(b, n_jobs, (delayed(tasks.fib)(n) for _ in range(count)))
            assert out == expected
            s["speedup"].append(base / took)
        # Tiny calls are short and swing with the machine's load: several
        # samples a round, the backends taking turns.
        for _ in range(SMALL_REPEATS):
            for b in order + ["sequential"]:
                took, out = parallel(b, -1 if b != "sequential" else 1,
                                     (delayed(abs)(i) for i in range(SMALL_CALLS)))
                assert out == list(range(SMALL_CALLS))
                if b == "sequential":
                    joblib_floor.append(SMALL_CALLS / took)
                else:
                    samples[b]["small_per_s"].append(SMALL_CALLS / took)
    return {"n_jobs": n_jobs, "rounds": rounds, "fib": n, "samples": samples,
            "sequential_small_per_s": joblib_floor}


def machine() -> str:
    import joblib

    return f"{base_machine()}; joblib {joblib.__version__}"


def report(res: dict[str, Any]) -> str:
    def med(b: str, m: str) -> float:
        return statistics.median(res["samples"][b][m])

    def rng(b: str, m: str, spec: str) -> str:
        v = res["samples"][b][m]
        return f"{format(min(v), spec)}-{format(max(v), spec)}"

    lines = [f"machine: {machine()}",
             f"n_jobs={res['n_jobs']}, {res['rounds']} interleaved rounds (median, min-max); "
             f"CPU work: {4 * res['n_jobs']} x fib({res['fib']})",
             "",
             "| backend | CPU speed-up | start-up ms (first call, cold) | 100k tiny calls, calls/s |",
             "|---|---:|---:|---:|"]
    for b in BACKENDS:
        lines.append(f"| {b} | {med(b, 'speedup'):.2f}x ({rng(b, 'speedup', '.2f')}) "
                     f"| {med(b, 'startup_s') * 1e3:.1f} ({rng(b, 'startup_s', '.3f')} s) "
                     f"| {med(b, 'small_per_s'):,.0f} ({rng(b, 'small_per_s', ',.0f')}) |")
    floor = statistics.median(res["sequential_small_per_s"])
    lines.append(f"| (sequential: joblib's own cost per call) | | | {floor:,.0f} |")
    mg, lk = "multigil", "loky"
    ratio = med(mg, "speedup") / med(lk, "speedup")
    lines += ["", "targets:",
              f"  [{'ok' if ratio >= 0.9 else 'MISS'}] speed-up >= 0.9 x loky's: "
              f"{med(mg, 'speedup'):.2f}x vs {med(lk, 'speedup'):.2f}x = {ratio:.2f}",
              f"  [{'ok' if med(mg, 'startup_s') < med(lk, 'startup_s') else 'MISS'}] start-up "
              f"below loky's: {med(mg, 'startup_s') * 1e3:.1f} ms vs {med(lk, 'startup_s') * 1e3:.1f} ms",
              f"  [{'ok' if med(mg, 'small_per_s') > med(lk, 'small_per_s') else 'MISS'}] many small "
              f"calls faster than loky: {med(mg, 'small_per_s'):,.0f}/s vs {med(lk, 'small_per_s'):,.0f}/s"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-jobs", type=int, default=getattr(os, "process_cpu_count", os.cpu_count)() or 2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--fib", type=int, default=27)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    res = run(args.n_jobs, args.rounds, args.fib)
    return finish(res, report(res), args.json)


if __name__ == "__main__":
    sys.exit(main())
