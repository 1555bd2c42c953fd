"""A joblib backend that runs ``Parallel`` calls in interpreters.

Importing this module registers the backend ``"multigil"``::

    import multigil.joblib
    from joblib import Parallel, delayed, parallel_config

    with parallel_config(backend="multigil"):
        results = Parallel(n_jobs=-1)(delayed(f)(x) for x in xs)

Every CPU runs pure-Python calls in one process, started in milliseconds,
with no pickling of the calls between processes.  Libraries that use joblib
(scikit-learn and others) take the backend from ``parallel_config``; the
functions they run must import in an isolated interpreter (pure Python, not
numpy): ``multigil check`` tells.  See docs/scaling.md.
"""

from __future__ import annotations

from joblib import register_parallel_backend

from ._integrations._joblib import InterpreterBackend, pools

__all__ = ["InterpreterBackend", "shutdown"]

register_parallel_backend("multigil", InterpreterBackend)


def shutdown() -> None:
    """Close the interpreters the backend keeps warm between ``Parallel``
    calls (the next call starts new ones).  They also close at exit."""
    pools.shutdown()
