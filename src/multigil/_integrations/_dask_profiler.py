"""Turn off Dask's statistical profiler in a worker that runs interpreters.

A distributed server samples its threads' stacks with ``sys._current_frames()``:
a "Profile" thread every ``distributed.worker.profile.cycle`` (all servers),
the worker's ``trigger_profile`` every ``interval`` while thread-pool tasks
run, and ``get_call_stack`` when a client asks (``client.call_stack()``).
On CPython 3.12-3.14 ``sys._current_frames()`` walks the thread states of
*every* interpreter of the process and makes frame objects, with the calling
interpreter's allocator, for frames that belong to other interpreters, which
later free them with theirs: once an interpreter runs Python code next to it,
the process aborts ("free(): invalid pointer") or crashes.  So before a worker
starts interpreters, its profiler is stopped and later servers of the process
are told not to start one; ``client.profile()`` is then empty for it, and
``client.call_stack()`` returns no stacks for it.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import TYPE_CHECKING, Any

import dask.config
from distributed import profile

if TYPE_CHECKING:
    from distributed import Worker

__all__ = ["stop_profiler", "disable_profiling"]

_CONFIG_KEY = "distributed.worker.profile.enabled"


def disable_profiling() -> None:
    """Tell the servers this process starts from now on (and the worker
    processes its nannies start) not to profile."""
    dask.config.set({_CONFIG_KEY: False})


class _SysWithoutFrames:
    """``sys`` as ``distributed.profile`` sees it once stopped: it finds no
    frames, on which its sampling thread returns."""

    def __getattr__(self, name: str) -> Any:
        return getattr(sys, name)

    @staticmethod
    def _current_frames() -> dict[int, Any]:
        return {}


def _no_call_stacks(keys: Any = None) -> dict[Any, Any]:
    return {}


async def stop_profiler(worker: Worker) -> None:
    """Stop every sampler of ``sys._current_frames()`` in this worker's process
    (see the module docstring); raise RuntimeError if one does not stop."""
    disable_profiling()
    callback = worker.periodic_callbacks.pop("profile", None)
    if callback is not None:
        callback.stop()
    if "call_stack" in worker.handlers:
        worker.handlers["call_stack"] = _no_call_stacks
    if not isinstance(getattr(profile, "sys"), _SysWithoutFrames):
        setattr(profile, "sys", _SysWithoutFrames())  # noqa: B010 (a module global)
    samplers = [t for t in threading.enumerate()
                if t.name == "Profile" and t.daemon and t is not threading.current_thread()]
    # A sampler notices at its next cycle (distributed.worker.profile.cycle).
    from dask.utils import parse_timedelta

    cycle = parse_timedelta(dask.config.get("distributed.worker.profile.cycle", "1s"), default="ms")
    deadline = 2 * float(cycle or 1) + 1
    for thread in samplers:
        await asyncio.to_thread(thread.join, deadline)
        if thread.is_alive():
            raise RuntimeError(
                "multigil.dask: Dask's profiler thread of this worker did not stop, and it "
                "would crash the process once interpreters run (it reads other interpreters' "
                "frames). Start the worker with profiling off: set "
                "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False in its environment, or "
                "dask.config.set({'distributed.worker.profile.enabled': False}) before the "
                "cluster starts.")
