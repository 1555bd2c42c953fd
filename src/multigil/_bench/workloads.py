"""The functions the benchmark runs inside workers.

Every executor must find these by reference (``module.qualname``), so they
live at the top level of an importable module. That module is imported in
every worker — threads, processes, and isolated interpreters alike — which
sets the rules for this file:

* pure standard library only, and only modules that load in an isolated
  sub-interpreter (``json`` and ``re`` do; numpy, ``_datetime`` and
  ``hashlib`` on 3.12 do not, see DESIGN.md);
* no heavy imports: this is not the place for the suite's catalogue (that is
  :mod:`multigil._bench.suite`), which is only needed in the main interpreter;
* deterministic inputs: the kernels build their own data from a seed with a
  tiny linear congruential generator instead of :mod:`random`, so each worker
  does the same work without an argument having to cross to it.

Kernels take a small ``size`` argument and return something small, so that
what a CPU workload measures is computation, not data transfer.

Importing this module costs a worker almost nothing (``os`` and builtins):
``json`` and ``re`` are imported by the kernels that use them, so that the
start-up and idle-memory figures measure the pool, not this benchmark's
imports (an interpreter that imports ``re`` grows by ~1 MiB).
"""

from __future__ import annotations

import _thread
import os
import time

# typing is not imported at run time (it drags in re and collections):
# mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

__all__ = [
    "noop",
    "worker_id",
    "ignore_sigint",
    "fib",
    "fib_task",
    "json_task",
    "regex_task",
    "nbody_task",
    "byte_len",
    "echo",
    "make_bytes",
    "make_int_list",
    "make_nested",
]


# -- tiny tasks ---------------------------------------------------------------


def noop(x: Any = None) -> Any:
    """Return *x*: the cheapest task there is, to expose per-task overhead."""
    return x


def worker_id(delay: float = 0.0) -> tuple[int, int]:
    """Sleep *delay* seconds, then return ``(pid, thread id)`` of this worker.

    The runner submits a few of these at once to make a lazily started pool
    start all its workers (a sleeping task keeps its worker busy, so the next
    task needs another one) and to count the distinct workers that answered.
    """
    if delay:
        time.sleep(delay)
    return os.getpid(), _thread.get_ident()


def ignore_sigint() -> None:
    """Process-pool initializer: leave Ctrl-C to the parent.

    A terminal sends SIGINT to the whole process group; without this, every
    worker process would print its own KeyboardInterrupt traceback while the
    parent is already shutting the pool down.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


# -- CPU-bound kernels ----------------------------------------------------------


def _lcg(seed: int) -> Iterator[int]:
    """Yield pseudo-random 31-bit integers; cheap, stdlib-free and repeatable."""
    x = seed & 0x7FFFFFFF or 1
    while True:
        x = (1103515245 * x + 12345) & 0x7FFFFFFF
        yield x


def fib(n: int) -> int:
    """Naive recursive Fibonacci: function-call overhead and small ints."""
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def fib_task(n: int) -> int:
    """One CPU task: ``fib(n)``."""
    return fib(n)


# Generated inputs are cached per worker (per interpreter, per process): the
# warm-up round pays for building them, the timed rounds measure the kernel.
_JSON_DOCS: dict[int, str] = {}
_LOG_LINES: dict[int, list[str]] = {}

_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


def _json_document(seed: int, records: int = 200) -> str:
    import json

    rnd = _lcg(seed)
    docs = []
    for i in range(records):
        docs.append(
            {
                "id": i,
                "name": f"{_WORDS[next(rnd) % 8]}-{next(rnd) % 10000}",
                "active": bool(next(rnd) & 1),
                "score": (next(rnd) % 100000) / 1000.0,
                "tags": [_WORDS[next(rnd) % 8] for _ in range(next(rnd) % 5)],
                "owner": {"uid": next(rnd) % 5000, "email": None, "ratio": 1.0 / (1 + i)},
                "history": [next(rnd) % 1000 for _ in range(8)],
            }
        )
    return json.dumps({"version": 1, "records": docs})


def json_task(rounds: int, seed: int = 1) -> int:
    """Parse and re-serialise a generated ~44 KB JSON document *rounds* times."""
    import json

    text = _JSON_DOCS.get(seed)
    if text is None:
        text = _JSON_DOCS[seed] = _json_document(seed)
    total = 0
    for _ in range(rounds):
        doc = json.loads(text)
        # Touch the parsed objects in Python too, as real code would.
        doc["records"].sort(key=lambda r: r["score"])
        total += len(json.dumps(doc, sort_keys=True))
    return total


_LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "WARNING", "ERROR")
_METHODS = ("GET", "GET", "POST", "PUT", "DELETE")


def _log_lines(seed: int, count: int = 2000) -> list[str]:
    rnd = _lcg(seed)
    lines = []
    for i in range(count):
        lines.append(
            f"2024-05-{1 + next(rnd) % 28:02d}T{next(rnd) % 24:02d}:{next(rnd) % 60:02d}:"
            f"{next(rnd) % 60:02d}.{next(rnd) % 1000:03d}Z {_LEVELS[next(rnd) % 6]} "
            f"[worker-{next(rnd) % 16}] {_METHODS[next(rnd) % 5]} "
            f"/api/v{1 + next(rnd) % 3}/{_WORDS[next(rnd) % 8]}/{next(rnd) % 100000} "
            f"{(200, 200, 201, 404, 500)[next(rnd) % 5]} {next(rnd) % 2000}ms "
            f"user={_WORDS[next(rnd) % 8]}{i % 97}"
        )
    return lines


_LOG_PATTERN = (
    r"^(?P<date>\d{4}-\d\d-\d\d)T(?P<time>[\d:.]+)Z (?P<level>[A-Z]+) "
    r"\[(?P<worker>[\w-]+)\] (?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3}) "
    r"(?P<ms>\d+)ms user=(?P<user>\w+)$"
)


def regex_task(rounds: int, seed: int = 1) -> int:
    """Parse 2,000 generated log lines with a named-group regex *rounds* times.

    Returns a checksum of the slow, failed requests found, so the work cannot
    be skipped.
    """
    import re

    lines = _LOG_LINES.get(seed)
    if lines is None:
        lines = _LOG_LINES[seed] = _log_lines(seed)
    match = re.compile(_LOG_PATTERN).match  # re caches the compiled pattern
    total = 0
    for _ in range(rounds):
        for line in lines:
            m = match(line)
            if m is not None and m["status"] == "500" and int(m["ms"]) > 1000:
                total += len(m["path"])
    return total


_SOLAR_MASS = 4 * 3.141592653589793**2
_DAYS_PER_YEAR = 365.24


def _bodies() -> list[list[float]]:
    # Sun, Jupiter, Saturn, Uranus, Neptune: [x, y, z, vx, vy, vz, mass].
    d, m = _DAYS_PER_YEAR, _SOLAR_MASS
    return [
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, m],
        [4.84143144246472090e00, -1.16032004402742839e00, -1.03622044471123109e-01,
         1.66007664274403694e-03 * d, 7.69901118419740425e-03 * d,
         -6.90460016972063023e-05 * d, 9.54791938424326609e-04 * m],
        [8.34336671824457987e00, 4.12479856412430479e00, -4.03523417114321381e-01,
         -2.76742510726862411e-03 * d, 4.99852801234917238e-03 * d,
         2.30417297573763929e-05 * d, 2.85885980666130812e-04 * m],
        [1.28943695621391310e01, -1.51111514016986312e01, -2.23307578892655734e-01,
         2.96460137564761618e-03 * d, 2.37847173959480950e-03 * d,
         -2.96589568540237556e-05 * d, 4.36624404335156298e-05 * m],
        [1.53796971148509165e01, -2.59193146099879641e01, 1.79258772950371181e-01,
         2.68067772490389322e-03 * d, 1.62824170038242295e-03 * d,
         -9.51592254519715870e-05 * d, 5.15138902046611451e-05 * m],
    ]


def nbody_task(steps: int) -> float:
    """Advance the five outer-planet n-body system *steps* times (float loops).

    Returns the final energy, which depends on every step.
    """
    bodies = _bodies()
    pairs = [(bodies[i], bodies[j]) for i in range(5) for j in range(i + 1, 5)]
    dt = 0.01
    for _ in range(steps):
        for b1, b2 in pairs:
            dx = b1[0] - b2[0]
            dy = b1[1] - b2[1]
            dz = b1[2] - b2[2]
            mag = dt * (dx * dx + dy * dy + dz * dz) ** -1.5
            m1 = b1[6] * mag
            m2 = b2[6] * mag
            b1[3] -= dx * m2
            b1[4] -= dy * m2
            b1[5] -= dz * m2
            b2[3] += dx * m1
            b2[4] += dy * m1
            b2[5] += dz * m1
        for b in bodies:
            b[0] += dt * b[3]
            b[1] += dt * b[4]
            b[2] += dt * b[5]
    energy = 0.0
    for i, b in enumerate(bodies):
        energy += 0.5 * b[6] * (b[3] ** 2 + b[4] ** 2 + b[5] ** 2)
        for b2 in bodies[i + 1 :]:
            dist = ((b[0] - b2[0]) ** 2 + (b[1] - b2[1]) ** 2 + (b[2] - b2[2]) ** 2) ** 0.5
            energy -= b[6] * b2[6] / dist
    return energy


# -- data transfer --------------------------------------------------------------


def byte_len(data: bytes) -> int:
    """Receive a buffer and return only its length: a one-way transfer."""
    return len(data)


def echo(value: Any) -> Any:
    """Return the argument itself: a round trip of the whole value."""
    return value


def make_bytes(size: int) -> bytes:
    """Build a *size*-byte payload (non-zero, so no page is shared or compressed)."""
    block = bytes(range(256))
    return (block * (size // 256 + 1))[:size]


def make_int_list(count: int) -> list[int]:
    """Build a list of *count* distinct ints, small and large."""
    return [i * 2654435761 % (1 << 40) for i in range(count)]


def make_nested(records: int) -> dict[str, Any]:
    """Build nested dicts and lists of str/int/float/bool/None, like an API response."""
    rnd = _lcg(7)
    return {
        "page": 1,
        "items": [
            {
                "id": i,
                "name": f"{_WORDS[next(rnd) % 8]}-{i}",
                "price": (next(rnd) % 100000) / 100.0,
                "in_stock": bool(next(rnd) & 1),
                "meta": {"tags": [_WORDS[next(rnd) % 8] for _ in range(3)], "parent": None},
            }
            for i in range(records)
        ],
    }
