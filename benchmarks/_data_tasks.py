"""Task functions for benchmarks/bench_data.py, importable by name in every
interpreter and in child processes (defined in the benchmark's __main__ they
would travel by value with cloudpickle on every call, or make a process pool
re-run the script).

Standard library only: the stdlib's interpreters on 3.14 import this module
too, and so do spawned processes.
"""

from __future__ import annotations

from typing import Any


def identity(x: Any) -> Any:
    return x


def echo_loop(ping: Any, pong: Any) -> int:
    """Echo every item of `ping` to `pong` until None; return the count.

    Works with multigil.Queue, concurrent.interpreters.Queue and queue.Queue
    alike (all have get() and put())."""
    n = 0
    while (x := ping.get()) is not None:
        pong.put(x)
        n += 1
    return n


def touch_ends(buf: Any) -> int:
    """Write a marker at both ends of a writable buffer, in place; return its size.

    What a worker does to a buffer it was handed: O(1), so the measured time
    is the hand-over itself, not the work."""
    mv = memoryview(buf)
    try:
        n = mv.nbytes
        mv[0] = 0xAB
        mv[n - 1] = 0xCD
        return n
    finally:
        mv.release()


# ---------------------------------------------------------------- processes --

def pipe_echo_server(conn: Any) -> None:
    """Child process: reply to every message; None ends it."""
    while True:
        msg = conn.recv()
        if msg is None:
            conn.close()
            return
        conn.send(msg)


def pipe_len_server(conn: Any) -> None:
    """Child process: reply len(payload) to every bytes message; b"" ends it."""
    while True:
        data = conn.recv_bytes()
        if not data:
            conn.close()
            return
        conn.send(len(data))


def shm_touch_server(conn: Any) -> None:
    """Child process: for every shared-memory name received, attach it, write
    markers at both ends, detach, and reply its size; None ends it."""
    from multiprocessing import shared_memory

    while True:
        name = conn.recv()
        if name is None:
            conn.close()
            return
        shm = shared_memory.SharedMemory(name=name)
        try:
            n = touch_ends(shm.buf)
        finally:
            shm.close()
        conn.send(n)
