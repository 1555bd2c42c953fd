"""The catalogue of what ``multigil bench`` measures.

A :class:`Workload` says *what* to run and how big; :mod:`multigil._bench.runner`
decides *how* to time it against each executor (its ``probe``). Names are
``group/name`` and are what ``--only`` accepts, along with the bare group
names and unambiguous bare workload names.

The kernels themselves are in :mod:`multigil._bench.workloads`, a separate
module, because every worker imports that one and it must stay light.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from . import workloads as _w

__all__ = [
    "GROUPS",
    "SUITE",
    "Probe",
    "Workload",
    "resolve",
    "valid_names",
]

#: How the runner drives an executor for a workload; see ``runner._PROBES``.
Probe = Literal["batch", "submit", "map", "transfer", "startup", "memory"]

#: Groups in the order the runner measures them. Fresh-pool groups come first,
#: while the process's heap is still small, so a pool's memory is not hidden
#: by memory that earlier pools freed and the allocator kept.
GROUPS: dict[str, str] = {
    "memory": "memory per idle worker (PSS)",
    "startup": "start-up: a fresh pool's first result",
    "cpu": "CPU-bound pure Python",
    "tiny": "tiny tasks: per-task overhead",
    "data": "data transfer",
}


@dataclass(frozen=True)
class Workload:
    """One named measurement.

    Attributes
    ----------
    name : str
        ``group/name``, as shown in tables and accepted by ``--only``.
    probe : Probe
        How the runner measures it (see :mod:`multigil._bench.runner`).
    description : str
        One line for ``docs/bench.md``, the JSON and ``--help``.
    unit : {"s", "tasks/s", "bytes"}
        Unit of each sample.
    higher_is_better : bool
        True for throughputs.
    fn : callable or None
        The task function (from :mod:`multigil._bench.workloads`).
    size, quick_size : int
        The probe's size parameter in a normal and a ``--quick`` run: the
        kernel argument for ``batch``, calls per sample for ``submit``, items
        for ``map``, the payload's size for ``transfer``.
    payload : callable or None
        For ``transfer``: builds the argument from ``size`` (in the parent,
        untimed).
    """

    name: str
    probe: Probe
    description: str
    unit: Literal["s", "tasks/s", "bytes"] = "s"
    higher_is_better: bool = False
    fn: Callable[..., Any] | None = None
    size: int = 0
    quick_size: int = 0
    payload: Callable[[int], Any] | None = None

    @property
    def group(self) -> str:
        """The group name: the part of :attr:`name` before the slash."""
        return self.name.split("/", 1)[0]

    @property
    def short(self) -> str:
        """The bare name: the part of :attr:`name` after the slash."""
        return self.name.split("/", 1)[1]

    def sized(self, quick: bool) -> int:
        """The size parameter for a quick or a normal run."""
        return self.quick_size if quick else self.size


MiB = 1 << 20

# CPU kernels are sized to ~10 ms a task (~6 ms with --quick) with CPython 3.12
# on the 2-vCPU reference machine: long enough that per-task overhead is noise
# for every contender, short enough to repeat the batch several times.
SUITE: tuple[Workload, ...] = (
    Workload(
        "memory/idle-worker",
        "memory",
        "extra proportional set size (PSS) per started, idle worker",
        unit="bytes",
    ),
    Workload(
        "startup/first-result",
        "startup",
        "create a pool and wait for the result of one no-op task",
    ),
    Workload(
        "cpu/fib",
        "batch",
        "recursive Fibonacci: calls and small ints",
        fn=_w.fib_task,
        size=26,
        quick_size=25,
    ),
    Workload(
        "cpu/json",
        "batch",
        "json.loads + sort + json.dumps of a generated 44 KB document",
        fn=_w.json_task,
        size=6,
        quick_size=4,
    ),
    Workload(
        "cpu/regex",
        "batch",
        "named-group regex over 2,000 generated log lines",
        fn=_w.regex_task,
        size=6,
        quick_size=4,
    ),
    Workload(
        "cpu/nbody",
        "batch",
        "n-body simulation: pure-Python float arithmetic",
        fn=_w.nbody_task,
        size=2500,
        quick_size=1600,
    ),
    Workload(
        "tiny/submit",
        "submit",
        "submit(noop).result() round trip, one task at a time",
        fn=_w.noop,
        size=200,
        quick_size=50,
    ),
    Workload(
        "tiny/map",
        "map",
        "list(map(noop, range(n))) throughput over many tiny items",
        unit="tasks/s",
        higher_is_better=True,
        fn=_w.noop,
        size=5000,
        quick_size=1000,
    ),
    Workload(
        "data/bytes-1MiB",
        "transfer",
        "send 1 MiB of bytes, get its length back",
        fn=_w.byte_len,
        size=1 * MiB,
        quick_size=1 * MiB,
        payload=_w.make_bytes,
    ),
    Workload(
        "data/bytes-16MiB",
        "transfer",
        "send 16 MiB of bytes, get its length back",
        fn=_w.byte_len,
        size=16 * MiB,
        quick_size=16 * MiB,
        payload=_w.make_bytes,
    ),
    Workload(
        "data/ints-100k",
        "transfer",
        "round trip of a list of 100,000 ints",
        fn=_w.echo,
        size=100_000,
        quick_size=100_000,
        payload=_w.make_int_list,
    ),
    Workload(
        "data/nested-dicts",
        "transfer",
        "round trip of 2,000 nested records (dicts, lists, str, float, bool, None)",
        fn=_w.echo,
        size=2_000,
        quick_size=2_000,
        payload=_w.make_nested,
    ),
)


def valid_names(suite: Sequence[Workload] = SUITE) -> list[str]:
    """Every name ``--only`` accepts: groups, then full workload names."""
    groups = [g for g in GROUPS if any(w.group == g for w in suite)]
    return groups + [w.name for w in suite]


def resolve(names: Sequence[str], suite: Sequence[Workload] = SUITE) -> list[Workload]:
    """Select workloads by group name, full name or unambiguous bare name.

    The result keeps the suite's order (which is the order of measurement),
    whatever the order of *names*.

    Raises
    ------
    ValueError
        If a name matches nothing; the message lists the valid names.
    """
    chosen: set[str] = set()
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        hits = [
            w.name
            for w in suite
            if name in (w.name, w.group) or (w.short == name)
        ]
        if not hits:
            raise ValueError(
                f"unknown workload or group {raw.strip()!r}; valid names: "
                + ", ".join(valid_names(suite))
            )
        chosen.update(hits)
    return [w for w in suite if w.name in chosen]
