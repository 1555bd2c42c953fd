"""Functions that tests/test_reliability.py runs inside interpreters
(standard library and multigil only: each travels by name, and the
interpreter imports this module)."""

from __future__ import annotations

from typing import Any

# Each C-level recursion (sorted() calling its key) costs C stack; this many
# per interpreter, through 31 interpreters, overflowed an 8 MiB stack on
# CPython 3.12 and 3.13 when every interpreter had a budget of its own.
C_DEPTH_PER_LEVEL = 300


def wait_on(kind: str, obj: Any, started: Any = None) -> str:
    """Block in one of multigil's own waits until interrupted (or released);
    set `started` (an Event) first."""
    if started is not None:
        started.set()
    if kind == "queue":
        obj.get()
    elif kind == "event":
        obj.wait()
    elif kind == "condition":
        with obj:
            obj.wait()
    else:  # lock, semaphore
        obj.acquire()
    return "released"


def view_of_main_data() -> memoryview:
    """A zero-copy view of the bytearray ``data`` of this interpreter's __main__."""
    import __main__

    return memoryview(__main__.data)


def recurse_through(n: int, ids: list[int]) -> int:
    """Recurse `n` calls deep, each call in the next interpreter of `ids`."""
    from multigil import interpreters

    if n == 0:
        return 0
    return interpreters.Interpreter(ids[n % len(ids)]).call(recurse_through, n - 1, ids) + 1


def recurse_in_c_through(k: int, n: int, ids: list[int]) -> int:
    """`k` C-level recursions here, then the same in the next interpreter, `n` times."""
    if k:
        return sorted([0], key=lambda _: recurse_in_c_through(k - 1, n, ids))[0]
    from multigil import interpreters

    if n == 0:
        return 0
    nxt = interpreters.Interpreter(ids[n % len(ids)])
    return nxt.call(recurse_in_c_through, C_DEPTH_PER_LEVEL, n - 1, ids) + 1


def frames_seen_here(rounds: int) -> int:
    """Call sys._current_frames() and sys._current_exceptions() `rounds` times."""
    import sys

    count = 0
    for _ in range(rounds):
        count = len(sys._current_frames())
        sys._current_exceptions()
    return count
