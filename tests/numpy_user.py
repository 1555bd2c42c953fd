"""A module of pure-Python functions that imports numpy, as user code often
does: it cannot be imported in an isolated interpreter."""

from __future__ import annotations

import numpy  # noqa: F401  (the point of this module)


def total(values: list[int]) -> int:
    return sum(values)
