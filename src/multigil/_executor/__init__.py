"""The parts of :class:`multigil.InterpreterPoolExecutor`, one concept a module.

``multigil.executor`` is the public namespace: the executor class, and all of
its asyncio support (``pool.run``, ``pool.amap``, ``multigil.run``,
``default_pool``).  These modules are private; bottom-up, each uses only
those listed before it:

* ``_future``   -- the future: cancel running tasks through the one callable
                   its pool gives it; the state changes the pool makes;
* ``_watchdog`` -- deadlines: call a function at a time unless cancelled
                   (the pool's per-task timeouts);
* ``_fallback_worker`` -- what runs a task in the fallback's processes (or
                   threads), and how the main process stops it there;
* ``_processes`` -- the fallback's processes: each task written straight to
                   a free one, every result read by one thread;
* ``_pool``     -- the executor's engine: the task records, worker threads,
                   the shared task queue, how an outcome completes a future,
                   stopping tasks, shutdown, broken pools, exit;
* ``_fallback`` -- ``fallback="process"``: tasks that refuse interpreters
                   run in forkserver processes instead;
* ``_chunks``   -- ``map``: chunking, ordered and unordered results, progress.

None of them is imported inside worker interpreters: a worker runs only the
C core's loop and the user's functions.  ``_fallback_worker`` is imported in
the fallback's processes.
"""
