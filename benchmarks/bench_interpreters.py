"""Interpreter life-cycle and call latency: multigil against the stdlib.

    python benchmarks/bench_interpreters.py [--json FILE] [--quick]

Measures, in one run and interleaved so that a noisy machine treats both
alike:

* create + close of one interpreter;
* ``call(noop)`` round trip from the main thread;
* ``call(noop)`` round trip from a warm thread (a thread that already entered
  the interpreter, as an executor worker does);

for multigil and for the running Python's own API: ``concurrent.interpreters``
on 3.14+, ``_interpreters`` on 3.13, ``_xxsubinterpreters`` on 3.12 (which can
only run source strings, so ``exec('pass')`` stands in for a call there).

Targets (docs/benchmarks.md): call(noop) <= 5 us from a warm thread, and at
least 5x faster than the stdlib's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _tasks import noop  # noqa: E402

from multigil import interpreters  # noqa: E402


# --------------------------------------------------------------- contenders --

class Multigil:
    name = "multigil"

    def create(self) -> Any:
        return interpreters.create()

    def close(self, interp: Any) -> None:
        interp.close()

    def caller(self, interp: Any) -> Callable[[], object]:
        call = interp.call
        return lambda: call(noop)


class Stdlib314:
    name = "concurrent.interpreters"

    def __init__(self) -> None:
        import concurrent.interpreters as ci

        self.ci = ci

    def create(self) -> Any:
        return self.ci.create()

    def close(self, interp: Any) -> None:
        interp.close()

    def caller(self, interp: Any) -> Callable[[], object]:
        call = interp.call
        return lambda: call(noop)


class Stdlib313:
    name = "_interpreters (3.13)"

    def __init__(self) -> None:
        import _interpreters

        self.mod = _interpreters

    def create(self) -> Any:
        return self.mod.create()

    def close(self, interp: Any) -> None:
        self.mod.destroy(interp)

    def caller(self, interp: Any) -> Callable[[], object]:
        call = self.mod.call
        return lambda: call(interp, noop)


class Stdlib312:
    name = "_xxsubinterpreters (3.12, exec)"

    def __init__(self) -> None:
        import _xxsubinterpreters

        self.mod = _xxsubinterpreters

    def create(self) -> Any:
        return self.mod.create()

    def close(self, interp: Any) -> None:
        self.mod.destroy(interp)

    def caller(self, interp: Any) -> Callable[[], object]:
        run = self.mod.run_string
        return lambda: run(interp, "pass")


def stdlib_contender() -> Any:
    for cls in (Stdlib314, Stdlib313, Stdlib312):
        try:
            return cls()
        except ImportError:
            continue
    return None


# -------------------------------------------------------------- measurement --

def time_calls(fn: Callable[[], object], n: int) -> float:
    """Seconds per call, over n calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def in_thread(fn: Callable[[], float]) -> float:
    result: list[float] = []
    t = threading.Thread(target=lambda: result.append(fn()))
    t.start()
    t.join()
    return result[0]


def measure(contenders: list[Any], repeats: int, calls: int) -> dict[str, dict[str, list[float]]]:
    samples: dict[str, dict[str, list[float]]] = {
        c.name: {"create_close": [], "call_main": [], "call_warm_thread": []} for c in contenders
    }
    interps = {c.name: c.create() for c in contenders}
    try:
        for _ in range(repeats):
            for c in contenders:  # interleaved: one round of each, in turn
                s = samples[c.name]
                t0 = time.perf_counter()
                c.close(c.create())
                s["create_close"].append(time.perf_counter() - t0)
                call = c.caller(interps[c.name])
                call()
                s["call_main"].append(time_calls(call, calls))

                def warm(call: Callable[[], object] = call) -> float:
                    time_calls(call, 100)  # enter once: the thread is now warm
                    return time_calls(call, calls)

                s["call_warm_thread"].append(in_thread(warm))
    finally:
        for c in contenders:
            c.close(interps[c.name])
    return samples


def fmt(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds * 1e6:8.2f} us"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    repeats, calls = (3, 2000) if args.quick else (9, 20000)

    contenders: list[Any] = [Multigil()]
    std = stdlib_contender()
    if std is not None:
        contenders.append(std)
    samples = measure(contenders, repeats, calls)

    print(f"Python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} CPUs; medians of {repeats} rounds (min-max)")
    metrics = [("create + close", "create_close"), ("call(noop), main thread", "call_main"),
               ("call(noop), warm thread", "call_warm_thread")]
    header = f"{'':26}" + "".join(f"{c.name:>34}" for c in contenders)
    if std is not None:
        header += f"{'speed-up':>10}"
    print(header)
    for label, key in metrics:
        row = f"{label:26}"
        for c in contenders:
            xs = samples[c.name][key]
            row += f"{fmt(statistics.median(xs)):>12} ({fmt(min(xs)).strip()}-{fmt(max(xs)).strip()})".rjust(34)
        if std is not None:
            ratio = statistics.median(samples[std.name][key]) / statistics.median(samples["multigil"][key])
            row += f"{ratio:>9.1f}x"
        print(row)

    if args.json:
        out = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "results": {name: {k: {"median": statistics.median(v), "samples": v}
                               for k, v in per.items()} for name, per in samples.items()},
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
