"""Soak: does memory stay flat over long runs?  (Run by hand; docs/benchmarks.md.)

    python benchmarks/soak.py [--cycles N] [--tasks N] [--round-trips N] [--json FILE]

Three phases, each with the process's RSS before and after (and a warm-up
first, so that what is allocated once is not counted as growth):

* ``cycles``: create and close an interpreter, N times (default 10,000);
* ``tasks``: N pool tasks (default 1,000,000), submitted one by one with at
  most 1,000 in flight, each result dropped;
* ``round trips``: N times (default 10,000), a 1 MiB SharedBuffer sent to an
  interpreter through a Queue, written there and sent back.

Expected: flat within 10 MiB on CPython 3.14+.  CPython 3.12 and 3.13 do not
return a destroyed interpreter's memory (about 2 MiB each on this VM), so
there the ``cycles`` phase grows by that much per cycle: its default is then
300 cycles (10,000 would need some 20 GiB), and the report states the growth
per cycle.  The other phases create no interpreter after their warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import deque
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _output import rss_bytes as rss  # noqa: E402
from _tasks import noop  # noqa: E402

from multigil import InterpreterPoolExecutor, Queue, SharedBuffer, interpreters  # noqa: E402

MIB = 1 << 20
# CPython 3.12 and 3.13 keep each destroyed interpreter's memory.
LEAKS_PER_INTERPRETER = sys.version_info < (3, 14)


def echo_buffers(ping: Any, pong: Any) -> int:
    """In an interpreter: mark each buffer from `ping` and send it back on
    `pong`, until None.  Returns the count."""
    n = 0
    while (buf := ping.get()) is not None:
        view = memoryview(buf)
        view[0] = n & 0xFF
        view.release()
        pong.put(buf)
        n += 1
    return n


def cycles(n: int) -> None:
    for _ in range(n):
        interpreters.create().close()


def tasks(n: int, pool: InterpreterPoolExecutor) -> None:
    window: deque[Any] = deque()
    for i in range(n):
        window.append(pool.submit(noop))
        if len(window) >= 1000:
            window.popleft().result()
    while window:
        window.popleft().result()


def round_trips(n: int, interp: interpreters.Interpreter) -> None:
    ping, pong = Queue(), Queue()
    echo = interp.call_in_thread(echo_buffers, ping, pong)
    buf = SharedBuffer(MIB)
    for _ in range(n):
        ping.put(buf)
        buf = pong.get(timeout=60)
    ping.put(None)
    echo.join()


def phase(name: str, count: int, run: Callable[[int], None], warmup: int) -> dict[str, Any]:
    run(warmup)
    before = rss()
    t0 = time.perf_counter()
    run(count)
    seconds = time.perf_counter() - t0
    after = rss()
    row = {"phase": name, "count": count, "seconds": seconds, "rss_before": before,
           "rss_after": after, "growth": after - before, "growth_per_item": (after - before) / count}
    print(f"{name:12} {count:>9,}  {seconds:8.1f} s  RSS {before / MIB:8.1f} -> "
          f"{after / MIB:8.1f} MiB  ({(after - before) / MIB:+.1f} MiB, "
          f"{(after - before) / count / 1024:+.2f} KiB each)", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=300 if LEAKS_PER_INTERPRETER else 10_000)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--round-trips", type=int, default=10_000)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)

    print(f"Python {sys.version.split()[0]}, pid {os.getpid()}, RSS at start "
          f"{rss() / MIB:.1f} MiB", flush=True)
    rows = []
    rows.append(phase("cycles", args.cycles, cycles, warmup=5))
    with InterpreterPoolExecutor(2) as pool:
        rows.append(phase("tasks", args.tasks, lambda n: tasks(n, pool), warmup=10_000))
    interp = interpreters.create()
    rows.append(phase("round trips", args.round_trips, lambda n: round_trips(n, interp),
                      warmup=100))
    interp.close()

    verdicts = []
    for row in rows:
        if row["phase"] == "cycles" and LEAKS_PER_INTERPRETER:
            verdicts.append(f"  [info] cycles: {row['growth_per_item'] / MIB:.2f} MiB per "
                            "destroyed interpreter (CPython 3.12/3.13 keep their memory)")
            continue
        ok = row["growth"] <= 10 * MIB
        verdicts.append(f"  [{'ok' if ok else 'FAIL'}] {row['phase']}: "
                        f"{row['growth'] / MIB:+.1f} MiB (flat within 10 MiB)")
    print("targets:\n" + "\n".join(verdicts))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": sys.version, "rows": rows}, f, indent=1)
    return 0 if all("FAIL" not in v for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
