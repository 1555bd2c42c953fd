"""Functions the Dask and joblib tests run in interpreters and worker
processes (standard library and multigil only: each travels by name, and
the interpreter or process imports this module)."""

from __future__ import annotations

import os
import time
from typing import Any


def where(x: Any = None) -> tuple[int, int, Any]:
    """(interpreter id, process id, x) of the call."""
    from multigil import interpreters

    return interpreters.get_current().id, os.getpid(), x


def interpreter_id(*_args: Any) -> int:
    from multigil import interpreters

    return interpreters.get_current().id


def inc(x: int, y: int = 0) -> int:
    return x + 1 + y


def add(*xs: int) -> int:
    return sum(xs)


def square(x: int) -> int:
    return x * x


def boom(x: Any) -> None:
    raise ValueError(f"boom {x}")


def fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise KeyError(f"bad item {x}")
    return x


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def busy(seconds: float) -> str:
    """Pure-Python work for about `seconds` (interruptible at any bytecode)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "done"


def live_interpreters() -> int:
    """How many interpreters exist in this process, the main one included."""
    from multigil import interpreters

    return len(interpreters.list_all())


def main_value(name: str) -> Any:
    """The value bound to `name` in the interpreter's __main__."""
    import __main__

    return getattr(__main__, name)


def call_joblib(n: int) -> list[int]:
    """A nested Parallel, called inside an interpreter."""
    from joblib import Parallel, delayed

    return Parallel(n_jobs=2)(delayed(square)(i) for i in range(n))  # type: ignore[no-any-return]


def inner_parallel(n: int) -> list[int]:
    """Parallel with the multigil backend, called in a thread of the main interpreter."""
    import multigil.joblib  # noqa: F401
    from joblib import Parallel, delayed

    return Parallel(n_jobs=2, backend="multigil")(delayed(square)(i) for i in range(n))  # type: ignore[no-any-return]
