"""Dask ``distributed`` workers that run pure-Python tasks in interpreters.

One worker process per machine uses every core: its tasks run in
interpreters that each own a GIL, instead of threads that share one.

::

    from multigil.dask import InterpreterPoolPlugin

    client.register_plugin(InterpreterPoolPlugin())      # every worker
    with dask.annotate(executor="interpreters"):
        total = client.compute(graph).result()

or, for workers started from the command line::

    dask worker SCHEDULER --nworkers 1 --nthreads $(nproc) --preload multigil.dask

Tasks without the annotation run in the worker's threads, as before.

Dask's statistical profiler keeps running: it samples the worker's threads
with ``sys._current_frames()``, which multigil replaces (in every process
that creates interpreters) by a version that is safe next to running
interpreters.  See docs/scaling.md.
"""

from __future__ import annotations

from ._integrations._dask import InterpreterPoolPlugin, InterpreterTaskExecutor, dask_setup

__all__ = ["InterpreterPoolPlugin", "InterpreterTaskExecutor", "dask_setup"]
