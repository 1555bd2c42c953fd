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

Importing this module turns Dask's statistical profiler off for the servers
this process starts (``distributed.worker.profile.enabled``), and the plugin
stops it in the workers it is installed on: it samples every thread's frames
with ``sys._current_frames()``, which crashes CPython while another
interpreter runs Python code.  See docs/scaling.md.
"""

from __future__ import annotations

from ._integrations._dask import InterpreterPoolPlugin, InterpreterTaskExecutor, dask_setup
from ._integrations._dask_profiler import disable_profiling

disable_profiling()

__all__ = ["InterpreterPoolPlugin", "InterpreterTaskExecutor", "dask_setup"]
