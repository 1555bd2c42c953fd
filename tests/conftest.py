"""Test configuration shared by every test module.

Functions that tests run inside interpreters live in ``helpers.py``, which
imports only the standard library: a function travels by name, so the
interpreter imports the module that defines it, and a test module would drag
pytest along.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def interps():  # type: ignore[no-untyped-def]
    """Factory of interpreters: ``interps(n)`` makes n; all closed at teardown."""
    from multigil import interpreters

    made = []

    def make(n: int = 1):  # type: ignore[no-untyped-def]
        new = [interpreters.create() for _ in range(n)]
        made.extend(new)
        return new

    yield make
    for interp in made:
        interp.close()
