"""CPython's own test_concurrent_futures, run against InterpreterPoolExecutor.

CPython's executor tests are mixins that take their executor from an
``executor_type`` attribute, and ``util.create_executor_tests`` builds test
classes from a mixin and an executor mixin.  This module imports those mixins
from the running Python's own ``test`` package and builds the classes with an
executor mixin whose ``executor_type`` is :class:`multigil.InterpreterPoolExecutor`:
CPython's tests, unchanged, none copied.

The ``test`` package is not everywhere (pyenv's 3.13.0 ships it; 3.12.1 here
and most distributions' builds do not): without it, this module is skipped,
saying so.  Our own tests of the same promises are in tests/test_executor*.py.
"""

from __future__ import annotations

import importlib
import sys
import unittest
from types import ModuleType

import pytest

import multigil

pytestmark = pytest.mark.timeout(300)


def _suite(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"test.test_concurrent_futures.{name}")
    except ImportError:
        return None


_names = ("util", "executor", "test_shutdown", "test_wait", "test_as_completed", "test_init")
_suites = {name: _suite(name) for name in _names}
_missing = [name for name, module in _suites.items() if module is None]
if _missing:
    pytest.skip(f"CPython {sys.version.split()[0]} here has no test.test_concurrent_futures "
                f"({', '.join(_missing)} missing): its test package is not installed",
                allow_module_level=True)

util = _suites["util"]
assert util is not None


class InterpreterPoolMixin(util.ExecutorMixin):  # type: ignore[misc, name-defined]
    executor_type = multigil.InterpreterPoolExecutor


# Tests that start a script doing `from concurrent.futures import
# <executor_type.__name__>`: a name that concurrent.futures has only from 3.14
# on, and then for its own executor.  tests/test_executor.py runs such scripts
# with multigil's (test_exit_finishes_submitted_work, with and without
# shutdown(wait=False); test_submit_during_interpreter_shutdown).
_IMPORTS_FROM_CONCURRENT_FUTURES = (
    "test_interpreter_shutdown",
    "test_submit_after_interpreter_shutdown",
    "test_hang_gh83386",
)


def _build(module_name: str, mixin_name: str) -> None:
    module = _suites[module_name]
    mixin = getattr(module, mixin_name)
    built: dict[str, type] = {"__name__": __name__}  # type: ignore[dict-item]
    util.create_executor_tests(built, mixin, executor_mixins=(InterpreterPoolMixin,))
    for name, cls in built.items():
        if not isinstance(cls, type):
            continue
        for test in _IMPORTS_FROM_CONCURRENT_FUTURES:
            if hasattr(cls, test):
                setattr(cls, test, unittest.skip(
                    "its script imports the executor from concurrent.futures; "
                    "tests/test_executor.py runs it with multigil's")(getattr(cls, test)))
        globals()[name] = cls


_build("executor", "ExecutorTest")
_build("test_shutdown", "ExecutorShutdownTest")
_build("test_wait", "WaitTests")
_build("test_as_completed", "AsCompletedTests")
_build("test_init", "InitializerMixin")
_build("test_init", "FailingInitializerMixin")
