"""Functions the executor tests run in worker interpreters (standard library
and multigil only: a function travels by name, so the worker imports this
module, and a test module would drag pytest along)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

# Set by init() in each worker interpreter; None until then.
marker: Any = None
calls = 0


class CustomError(Exception):
    """A picklable exception of this module: rebuilt as its own type."""

    def __init__(self, code: int, note: str) -> None:
        super().__init__(code, note)
        self.code = code
        self.note = note


class UnpicklableError(Exception):
    def __init__(self, lock: Any) -> None:
        super().__init__("holds a lock")
        self.lock = lock

    def __reduce__(self) -> Any:
        raise TypeError("UnpicklableError cannot be pickled")


class Maker:
    """A module-level class: its class and static methods cross by reference."""

    @classmethod
    def make(cls, x: Any) -> list[Any]:
        return ["made", x]

    @staticmethod
    def twice(x: Any) -> Any:
        return x * 2


def noop() -> None:
    return None


def identity(x: Any) -> Any:
    return x


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def kw(a: int, *, b: int = 0, c: int = 0) -> tuple[int, int, int]:
    return a, b, c


def fail_on(x: int, bad: int) -> int:
    """x, or ValueError for x == bad."""
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


def raise_custom(code: int) -> None:
    raise CustomError(code, "custom")


def raise_unpicklable() -> None:
    import threading

    raise UnpicklableError(threading.Lock())


def raise_system_exit(code: int = 3) -> None:
    sys.exit(code)


def raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


def interp_id() -> int:
    from multigil import interpreters

    return interpreters.get_current().id


def pid_and_interp() -> tuple[int, int]:
    return os.getpid(), interp_id()


def init(value: Any) -> None:
    global marker
    marker = value


def init_fail(msg: str) -> None:
    raise ValueError(msg)


def get_marker() -> Any:
    return marker


def count_call() -> int:
    """How many times this interpreter ran it (tests max_tasks_per_worker)."""
    global calls
    calls += 1
    return calls


def main_value(name: str) -> Any:
    import __main__

    return getattr(__main__, name, None)


def spin_forever(started: Any = None) -> None:
    """Pure-Python endless loop (interruptible at bytecode boundaries)."""
    if started is not None:
        started.set()
    x = 0
    while True:
        x += 1


def spin_then_return(started: Any, seconds: float) -> str:
    """Set `started`, then busy-loop for `seconds` and return."""
    started.set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "finished"


def wait_event(started: Any, release: Any, value: Any = None) -> Any:
    """Set `started`, block until `release` is set, return `value`."""
    if started is not None:
        started.set()
    if not release.wait(60):
        raise TimeoutError("release was never set")
    return value


def interp_id_when_released(started: Any, release: Any) -> int:
    """Set `started`, block until `release` is set, return the interpreter's id:
    as many such tasks as workers, and each worker is seen once."""
    wait_event(started, release)
    return interp_id()


def busy_interval(iterations: int) -> tuple[int, int]:
    """Pure-Python work; its (start, end) on the process-wide perf_counter_ns."""
    clock = time.perf_counter_ns
    start = clock()
    x = 0
    for i in range(iterations):
        x += i * i
    return start, clock()


def import_module(name: str) -> str:
    import importlib

    importlib.import_module(name)
    return "imported"


def print_and_spin(text: str) -> None:
    # One write: print() writes the text and the newline apart, and two
    # interpreters printing at once would interleave them ("otherrunning").
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    x = 0
    while True:
        x += 1


def slow_square(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x * x


def main_value_refcount(name: str) -> int:
    """sys.getrefcount() of a global of the worker's __main__ (as an argument)."""
    import __main__

    return sys.getrefcount(getattr(__main__, name))


def view_of_new_buffer(size: int) -> memoryview:
    """A memoryview of memory the worker's interpreter owns."""
    return memoryview(bytearray(size))


def leave_traces(path_entry: str) -> dict[str, Any]:
    """Change what a fresh worker must not see, and say what a fresh one sees."""
    import contextvars

    import __main__

    seen = worker_state()
    import fractions  # noqa: F401  (a module the worker did not import at start-up)

    __main__.leftover = "from an earlier task"
    sys.path.append(path_entry)
    contextvars.ContextVar("leftover").set(1)
    sys.setrecursionlimit(sys.getrecursionlimit() + 7)
    return seen


def worker_state() -> dict[str, Any]:
    import contextvars

    import __main__

    return {"fractions": "fractions" in sys.modules, "leftover": hasattr(__main__, "leftover"),
            "path": list(sys.path), "context": len(contextvars.copy_context()),
            "recursion": sys.getrecursionlimit(), "marker": marker, "calls": calls}


def register_at_fork(**kwargs: Any) -> str:
    os.register_at_fork(**kwargs)
    return "registered"


def import_json(x: int) -> int:
    import json

    return len(json.dumps([x] * 10))


from helpers import work_slices  # noqa: E402,F401  (one implementation for all tests)


class FalseyBoolError(Exception):
    def __bool__(self) -> bool:
        return False


class FalseyLenError(Exception):
    def __len__(self) -> int:
        return 0


def raise_(exc_type: type[BaseException], msg: str) -> None:
    raise exc_type(msg)


def get(q: Any) -> Any:
    """Block on a multigil Queue until an item comes."""
    return q.get()

class Box:
    """A result that can be weakly referenced."""

    def __init__(self, value: Any) -> None:
        self.value = value


def box(x: Any) -> Box:
    return Box(x)


def module_name() -> str:
    """The __name__ of the globals this function runs in."""
    return __name__


def ready_then_block(taskid: int, ready: Any, blocker: Any) -> None:
    ready.put_nowait(taskid)
    blocker.get()
