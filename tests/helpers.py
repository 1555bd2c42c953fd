"""Functions the tests run inside interpreters (standard library only)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def noop() -> None:
    return None


def echo(*args: Any, **kwargs: Any) -> Any:
    return args, kwargs


def identity(x: Any) -> Any:
    return x


def add(a: int, b: int) -> int:
    return a + b


def raise_value_error(msg: str) -> None:
    raise ValueError(msg)


def hold(started: Any, release: Any) -> None:
    """Signal `started`, then block until `release` (multigil Events)."""
    started.set()
    release.wait(60)


def put_unshareable() -> None:
    """Raise a NotShareableError of its own: a queue refuses a lock."""
    import threading

    import multigil

    multigil.Queue().put(threading.Lock())


class FailsToUnpickle:
    """Pickles, but its unpickling raises (as CPython's PickleShenanigans)."""

    def __init__(self, refuse: bool = False) -> None:
        if refuse:
            raise RuntimeError("refused to unpickle")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (True,))

    def __call__(self) -> None:
        return None


def raise_system_exit(code: int) -> None:
    sys.exit(code)


def raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


def interpreter_id() -> int:
    from multigil import interpreters

    return interpreters.get_current().id


def sys_path() -> list[str]:
    return list(sys.path)


def getcwd() -> str:
    return os.getcwd()


def import_and_call(module: str, attr: str, *args: Any) -> Any:
    import importlib

    return getattr(importlib.import_module(module), attr)(*args)


def try_import(module: str) -> str:
    import importlib

    importlib.import_module(module)
    return "imported"


def work_slices(seconds: float, slice_iterations: int = 2000) -> list[tuple[int, int]]:
    """Busy pure-Python work for about `seconds`, cut into short slices; the
    (start, end) of each slice in perf_counter_ns, which every interpreter
    reads from the same process-wide monotonic clock."""
    slices = []
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    while True:
        start = clock()
        x = 0
        for i in range(slice_iterations):
            x += i * i
        end = clock()
        slices.append((start, end))
        if end > deadline:
            return slices


def unpicklable_result() -> Any:
    import threading

    return threading.Lock()


def main_has(name: str) -> bool:
    import __main__

    return hasattr(__main__, name)


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


class ExecInThread:
    """Run source in an interpreter from a new thread; re-raise its error on join.

    Used by the tests themselves (not inside interpreters)."""

    def __init__(self, interp: Any, src: str) -> None:
        import threading

        self.error: BaseException | None = None

        def target() -> None:
            try:
                interp.exec(src)
            except BaseException as exc:  # noqa: BLE001 - re-raised in join()
                self.error = exc

        self.thread = threading.Thread(target=target)
        self.thread.start()

    def join(self, timeout: float = 60) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "interpreter thread did not finish"
        if self.error is not None:
            raise self.error


def unpickle_and_put(data: bytes, item: Any) -> None:
    import pickle

    pickle.loads(data).put(item)
def rss_kib() -> int:
    """Resident set size of this process (every interpreter in it), in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")
