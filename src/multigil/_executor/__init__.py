"""The parts of :class:`multigil.InterpreterPoolExecutor`, one concept a module.

``multigil.executor`` is the public namespace; these modules are private:

* ``_future``   -- the future (cancel running tasks) and how a worker's outcome
                   becomes a result or an exception;
* ``_pool``     -- the executor: worker threads, the shared task queue,
                   shutdown, broken pools, exit;
* ``_chunks``   -- ``map``: chunking, ordered and unordered results, progress;
* ``_watchdog`` -- per-task timeouts;
* ``_aio``      -- asyncio: ``pool.run``, ``pool.amap``, ``multigil.run``.

None of them is imported inside worker interpreters: a worker runs only the
C core's loop and the user's functions.
"""
