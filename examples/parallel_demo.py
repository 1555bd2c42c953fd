"""CPU-bound pure Python on every core, through interpreters with their own GIL.

    python examples/parallel_demo.py [N]

Runs the same pure-Python work serially, in N threads (one GIL: no speed-up)
and in N interpreters driven from N threads (N GILs), and prints the speed-ups.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from multigil import interpreters


def count_primes(limit: int) -> int:
    """Deliberately naive: pure-Python CPU work."""
    found = 0
    for n in range(2, limit):
        for d in range(2, int(n**0.5) + 1):
            if n % d == 0:
                break
        else:
            found += 1
    return found


def run_in_threads(n: int, target) -> float:  # type: ignore[no-untyped-def]
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else (os.cpu_count() or 2)
    limit = 120_000
    start = time.perf_counter()
    expected = [count_primes(limit) for _ in range(n)]
    serial = time.perf_counter() - start

    threaded = run_in_threads(n, lambda i: count_primes(limit))

    interps = [interpreters.create() for _ in range(n)]
    results: list[int] = [0] * n

    def in_interp(i: int) -> None:
        results[i] = interps[i].call(count_primes, limit)

    in_interp(0)  # first call ships the function there; time the steady state
    parallel = run_in_threads(n, in_interp)
    for it in interps:
        it.close()
    assert results == expected, (results, expected)

    print(f"{n} x count_primes({limit:,}) on {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"  serial            {serial:6.2f} s   1.00x")
    print(f"  {n} threads         {threaded:6.2f} s   {serial / threaded:4.2f}x   (one GIL)")
    print(f"  {n} interpreters    {parallel:6.2f} s   {serial / parallel:4.2f}x   (one GIL each)")


if __name__ == "__main__":
    main()
