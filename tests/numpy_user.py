"""A module of pure-Python functions that imports numpy, as user code often
does: it cannot be imported in an isolated interpreter."""

from __future__ import annotations

import numpy  # noqa: F401  (the point of this module)


def total(values: list[int]) -> int:
    return sum(values)


def place(*_args: object) -> tuple[int, int]:
    """(pid, interpreter id) of where it runs."""
    import os

    from multigil import interpreters

    return os.getpid(), interpreters.get_current().id
