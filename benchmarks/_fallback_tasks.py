"""Task functions for benchmarks/bench_fallback.py, importable by name in
every interpreter and process.

It imports numpy at module level, as user code does: none of its functions
can be rebuilt in an isolated interpreter, so a fallback pool runs them in
its processes.  The pure-Python work is _engine_tasks.fib.
"""

from __future__ import annotations

import numpy as np


def np_noop(i: int) -> int:
    """The cheapest task that needs numpy: the per-task cost."""
    return i


def np_work(steps: int) -> int:
    """numpy work that holds the GIL: many operations on a small array."""
    a = np.arange(64, dtype=np.int64)
    for _ in range(steps):
        a = (a * 3 + 1) % 1009
    return int(a.sum())
