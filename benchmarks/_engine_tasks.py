"""Task functions for benchmarks/bench_dask.py and bench_joblib.py, importable
by name in every interpreter and worker process (defined in a benchmark's
__main__ they would travel by value and be pickled again for every task).

Standard library only.
"""

from __future__ import annotations


def fib(n: int) -> int:
    """Pure-Python CPU work."""
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def fib_task(n: int, _i: int) -> int:
    """fib(n); the second argument only makes each Dask task's key distinct."""
    return fib(n)


def noop(*_args: object) -> None:
    return None
