"""The data plane: queues, big arguments, containers and shared memory, against peers.

    python benchmarks/bench_data.py [--json FILE] [--quick]

Five measurements, each against its peers *in the same run*: every round
takes one sample of every contender in turn (interleaved), so that a noisy
moment of the machine costs one sample of everyone rather than all samples of
one; the table shows the median of the rounds and their spread (min-max).

1. **Queue ping-pong**: one thread in each of two interpreters bounce an int
   through two ``multigil.Queue`` objects (passed to the worker through
   ``call``); time per round trip.  Peers: 3.14's
   ``concurrent.interpreters.create_queue()`` (where present), a
   ``multiprocessing.Pipe`` to a child process, and ``queue.Queue`` between two
   threads of one interpreter (the floor: no interpreter boundary at all).
2. **16 MiB argument**: ``interp.call(len, payload)`` with ``bytes`` (at most
   one copy), a ``memoryview`` and a ``SharedBuffer`` (no copy at all).  The
   yardstick is ``bytearray(payload)``, one plain copy, timed in the same run.
   Peers: the stdlib's ``Interpreter.call`` (3.14), ``ProcessPoolExecutor``,
   and ``Connection.send_bytes`` to a child process that replies ``len``.
3. **100k ints there and back**: ``interp.call(identity, list(range(100_000)))``.
   Peers: pickle dumps+loads twice in-process (there and back, no transport),
   a pipe to an echoing child process, ``ProcessPoolExecutor``, and the
   ``InterpreterPoolExecutor`` of the stdlib (3.14) and of multigil.
4. **Zero-copy hand-over of 100 MiB**: a ``SharedBuffer`` made in the main
   interpreter is passed to a worker interpreter, which writes into it; the
   main interpreter then reads the writes through ``numpy.frombuffer`` (or a
   memoryview without numpy).  Also a writable ``memoryview`` of a bytearray,
   and the process peer: ``multiprocessing.shared_memory`` attached by name in
   a child.  ``bytes(buffer)`` shows what one copy of 100 MiB would cost.
5. **10k Fractions there and back**: ``interp.call(identity, fractions)``, a
   list of values that have to be pickled.  The yardstick: cloudpickle
   dumps+loads of the whole list twice in-process (one pickle call each way is
   what multigil makes of it; one call per item was ~3x slower).

Targets (docs/data.md, DESIGN.md): ping-pong <= 20 us; 16 MiB bytes <= 1.2 x
``bytearray(payload)``; memoryview / SharedBuffer: no copy (microseconds);
100k ints <= 5 ms; 100 MiB hand-over in microseconds.

Task functions live in ``_data_tasks.py`` (importable by name everywhere; in
``__main__`` they would travel by value with cloudpickle on every call).
"""

from __future__ import annotations

import argparse
import array
import fractions
import gc
import json
import multiprocessing
import os
import pickle
import platform
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _data_tasks as tasks  # noqa: E402

import multigil  # noqa: E402
from multigil import interpreters  # noqa: E402

numpy: Any
try:
    import numpy
except ImportError:  # the hand-over is then read back through a memoryview
    numpy = None

MiB = 1 << 20
PAYLOAD_SIZE = 16 * MiB
INTS = 100_000
FRACTIONS = 10_000
HANDOVER_SIZE = 100 * MiB

# Child processes are spawned: forking a process that runs other interpreters'
# threads copies half-held locks.
MP = multiprocessing.get_context("spawn")


# ---------------------------------------------------------------- contenders --

class Contender:
    """One way of doing a measurement's operation.

    ``op()`` does it once; ``setup()`` and ``close()`` bracket the whole run,
    so that no sample pays for starting interpreters, processes or pools.
    ``peer`` marks the reference lines (``reference``: a yardstick, not a way
    of doing the job)."""

    def __init__(self, name: str, op: Callable[[], object] | None = None, *,
                 setup: Callable[[], Callable[[], object]] | None = None,
                 close: Callable[[], None] | None = None, kind: str = "multigil",
                 min_n: int = 1, max_n: int = 100_000, group: str | None = None) -> None:
        self.name = name
        self.op = op
        self._setup = setup
        self._close = close
        self.kind = kind          # "multigil", "peer" or "reference"
        self.min_n = min_n
        self.group = group        # contenders of one group get the same n
        self.max_n = max_n
        self.n = 1                # operations per sample, set by calibrate()

    def setup(self) -> None:
        if self._setup is not None:
            self.op = self._setup()

    def close(self) -> None:
        if self._close is not None:
            self._close()

    def calibrate(self, target: float) -> None:
        """Pick n so that one sample lasts about `target` seconds."""
        assert self.op is not None
        op = self.op
        op()  # warm: first-call costs (imports, caches) are not measured
        # Time a batch, not one call: one preempted call on a busy machine
        # would otherwise make every sample of this contender far too short.
        count, t0 = 0, time.perf_counter()
        while True:
            op()
            count += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= target / 4 or count >= self.max_n:
                break
        once = max(elapsed / count, 1e-7)
        self.n = int(min(self.max_n, max(self.min_n, target / once)))

    def sample(self) -> float:
        """Seconds per operation, over n operations."""
        op = self.op
        assert op is not None
        n = self.n
        t0 = time.perf_counter()
        for _ in range(n):
            op()
        return (time.perf_counter() - t0) / n


class Measurement:
    def __init__(self, key: str, title: str, contenders: list[Contender]) -> None:
        self.key = key
        self.title = title
        self.contenders = contenders
        self.samples: dict[str, list[float]] = {c.name: [] for c in contenders}
        self.skipped: dict[str, str] = {}

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])


# ----------------------------------------------------------- the resources --

class Resources:
    """Everything started once for the whole run, and closed at the end."""

    def __init__(self) -> None:
        self.closers: list[Callable[[], object]] = []

    def add(self, closer: Callable[[], object]) -> None:
        self.closers.append(closer)

    def close(self) -> None:
        for closer in reversed(self.closers):
            try:
                closer()
            except Exception as exc:  # noqa: BLE001 - report, keep closing the rest
                print(f"bench_data: clean-up failed: {exc!r}", file=sys.stderr)
        self.closers.clear()


def stdlib_interpreters() -> Any:
    try:
        import concurrent.interpreters as ci
    except ImportError:
        return None
    return ci


def stop_echo(ping: Any, worker: threading.Thread) -> None:
    """End a tasks.echo_loop worker: None ends its loop."""
    ping.put(None)
    worker.join()


def new_stdlib_interp(ci: Any, res: Resources) -> Any:
    interp = ci.create()
    res.add(interp.close)
    # A stdlib interpreter starts without the sys.path entries added at run time.
    interp.exec(f"import sys\nsys.path.insert(0, {HERE!r})")
    return interp


def new_multigil_interp(res: Resources) -> Any:
    interp = interpreters.create()
    res.add(interp.close)
    return interp


def start_child(target: Callable[[Any], None], res: Resources) -> Any:
    """A spawned child process running target(conn); returns our end of the pipe."""
    ours, theirs = MP.Pipe()
    proc = MP.Process(target=target, args=(theirs,), daemon=True)
    proc.start()
    theirs.close()

    def stop() -> None:
        try:
            if target is tasks.pipe_len_server:
                ours.send_bytes(b"")
            else:
                ours.send(None)
        except OSError:
            pass
        proc.join(10)
        if proc.is_alive():
            proc.kill()
        ours.close()

    res.add(stop)
    return ours


def start_process_pool(res: Resources) -> ProcessPoolExecutor:
    pool = ProcessPoolExecutor(1, mp_context=MP)
    pool.submit(tasks.identity, None).result()   # started before any timing
    res.add(pool.shutdown)
    return pool


# ------------------------------------------------------------ measurements --

def ping_pong(res: Resources, quick: bool) -> Measurement:
    contenders: list[Contender] = []

    def multigil_queue() -> Callable[[], object]:
        interp = new_multigil_interp(res)
        ping, pong = multigil.Queue(), multigil.Queue()
        worker = interp.call_in_thread(tasks.echo_loop, ping, pong)
        res.add(lambda: stop_echo(ping, worker))
        put, get = ping.put, pong.get
        return lambda: (put(1), get())

    contenders.append(Contender("multigil.Queue (2 interpreters)", setup=multigil_queue))

    ci = stdlib_interpreters()
    if ci is not None:
        def stdlib_queue() -> Callable[[], object]:
            interp = new_stdlib_interp(ci, res)
            ping, pong = ci.create_queue(), ci.create_queue()
            worker = interp.call_in_thread(tasks.echo_loop, ping, pong)
            res.add(lambda: stop_echo(ping, worker))
            put, get = ping.put, pong.get
            return lambda: (put(1), get())

        # 10 ms a round trip: a few per sample is plenty.
        contenders.append(Contender("concurrent.interpreters queue (3.14)", setup=stdlib_queue,
                                    kind="peer", max_n=5 if quick else 10))

    def mp_pipe() -> Callable[[], object]:
        conn = start_child(tasks.pipe_echo_server, res)
        send, recv = conn.send, conn.recv
        return lambda: (send(1), recv())

    contenders.append(Contender("multiprocessing.Pipe (2 processes)", setup=mp_pipe, kind="peer"))

    def threads_queue() -> Callable[[], object]:
        ping: queue.Queue[Any] = queue.Queue()
        pong: queue.Queue[Any] = queue.Queue()
        worker = threading.Thread(target=tasks.echo_loop, args=(ping, pong), daemon=True)
        worker.start()
        res.add(lambda: stop_echo(ping, worker))
        put, get = ping.put, pong.get
        return lambda: (put(1), get())

    contenders.append(Contender("queue.Queue (2 threads, floor)", setup=threads_queue,
                                kind="reference"))
    return Measurement("queue_ping_pong", "Queue ping-pong, per round trip", contenders)


def big_argument(res: Resources, quick: bool) -> Measurement:
    payload = os.urandom(PAYLOAD_SIZE)
    # The same number of copies per sample (at least a few) for the copy and
    # for every contender that copies in this process: the first 16 MiB
    # allocation of a sample may fault in fresh pages, the next ones reuse
    # them (glibc raises its mmap threshold after a free), so a different n
    # would favour the side that makes more calls per sample.
    few = 3 if quick else 5
    contenders: list[Contender] = [
        Contender("bytearray(payload): one copy", lambda: bytearray(payload), kind="reference",
                  min_n=few, group="copy"),
    ]

    def mg(make_arg: Callable[[], Any]) -> Callable[[], Callable[[], object]]:
        def setup() -> Callable[[], object]:
            interp = new_multigil_interp(res)
            call, arg = interp.call, make_arg()
            assert call(len, arg) == PAYLOAD_SIZE
            return lambda: call(len, arg)
        return setup

    def shared() -> multigil.SharedBuffer:
        buf = multigil.SharedBuffer(PAYLOAD_SIZE)
        memoryview(buf)[:] = payload
        res.add(buf.release)
        return buf

    contenders += [
        Contender("multigil call(len, bytes)", setup=mg(lambda: payload), min_n=few,
                  group="copy"),
        Contender("multigil call(len, memoryview)", setup=mg(lambda: memoryview(payload))),
        Contender("multigil call(len, SharedBuffer)", setup=mg(shared)),
    ]

    ci = stdlib_interpreters()
    if ci is not None:
        def std(make_arg: Callable[[], Any]) -> Callable[[], Callable[[], object]]:
            def setup() -> Callable[[], object]:
                interp = new_stdlib_interp(ci, res)
                call, arg = interp.call, make_arg()
                assert call(len, arg) == PAYLOAD_SIZE
                return lambda: call(len, arg)
            return setup

        contenders += [
            Contender("stdlib Interpreter.call(len, bytes)", setup=std(lambda: payload),
                      kind="peer", min_n=few, group="copy"),
            Contender("stdlib Interpreter.call(len, memoryview)",
                      setup=std(lambda: memoryview(payload)), kind="peer"),
        ]

    def process_pool() -> Callable[[], object]:
        pool = start_process_pool(res)
        return lambda: pool.submit(len, payload).result()

    def pipe() -> Callable[[], object]:
        conn = start_child(tasks.pipe_len_server, res)
        send, recv = conn.send_bytes, conn.recv
        return lambda: (send(payload), recv())

    contenders += [
        Contender("ProcessPoolExecutor submit(len, bytes)", setup=process_pool, kind="peer"),
        Contender("multiprocessing pipe send_bytes", setup=pipe, kind="peer"),
    ]
    return Measurement("arg_16mib", "16 MiB argument: call(len, x), per call", contenders)


def int_list(res: Resources, quick: bool) -> Measurement:
    lst = list(range(INTS))
    dumps, loads = pickle.dumps, pickle.loads
    contenders: list[Contender] = [
        Contender("pickle dumps+loads x2 (in-process)",
                  lambda: loads(dumps(loads(dumps(lst, 5)), 5)), kind="reference"),
        # The floor of any copy: building (and freeing) 100k int objects on
        # each side, done by C code with nothing to decode.
        Contender("2 x list(range(100k)): the allocation floor",
                  lambda: (list(range(INTS, 2 * INTS)), list(range(INTS, 2 * INTS))),
                  kind="reference"),
    ]

    def mg_call() -> Callable[[], object]:
        interp = new_multigil_interp(res)
        call, identity = interp.call, tasks.identity
        assert call(identity, lst) == lst
        return lambda: call(identity, lst)

    contenders.append(Contender("multigil call(identity, lst)", setup=mg_call))

    def mg_array() -> Callable[[], object]:
        # The same numbers as one array('q'): pickled as 800 KB of bytes, no
        # int objects to build.  What to send when the numbers are many.
        interp = new_multigil_interp(res)
        call, identity, arr = interp.call, tasks.identity, array.array("q", lst)
        assert call(identity, arr) == arr
        return lambda: call(identity, arr)

    contenders.append(Contender("multigil call(identity, array('q', lst))", setup=mg_array))

    MgPool: Any = None
    mg_pool_error = ""
    try:
        from multigil import InterpreterPoolExecutor as MgPool
    except Exception as exc:  # noqa: BLE001 - the executor is optional here
        mg_pool_error = repr(exc)

    if MgPool is not None:
        def mg_pool() -> Callable[[], object]:
            pool = MgPool(1)
            res.add(pool.shutdown)
            assert pool.submit(tasks.identity, lst).result() == lst
            return lambda: pool.submit(tasks.identity, lst).result()

        contenders.append(Contender("multigil InterpreterPoolExecutor", setup=mg_pool))

    ci = stdlib_interpreters()
    if ci is not None:
        def std_pool() -> Callable[[], object]:
            import concurrent.futures

            # getattr: the name exists from 3.14 only, which type checkers can't know here.
            InterpreterPoolExecutor: Any = getattr(  # noqa: B009
                concurrent.futures, "InterpreterPoolExecutor")
            # Workers don't see run-time sys.path changes: add ours there.
            pool = InterpreterPoolExecutor(
                1, initializer=exec, initargs=(f"import sys\nsys.path.insert(0, {HERE!r})",))
            res.add(pool.shutdown)
            assert pool.submit(tasks.identity, lst).result() == lst
            return lambda: pool.submit(tasks.identity, lst).result()

        contenders.append(Contender("stdlib InterpreterPoolExecutor (3.14)", setup=std_pool,
                                    kind="peer"))

    def process_pool() -> Callable[[], object]:
        pool = start_process_pool(res)
        return lambda: pool.submit(tasks.identity, lst).result()

    def pipe() -> Callable[[], object]:
        conn = start_child(tasks.pipe_echo_server, res)
        send, recv = conn.send, conn.recv
        return lambda: (send(lst), recv())

    contenders += [
        Contender("ProcessPoolExecutor submit(identity, lst)", setup=process_pool, kind="peer"),
        Contender("multiprocessing pipe send+recv", setup=pipe, kind="peer"),
    ]
    m = Measurement("ints_100k", "list of 100k ints there and back, per round trip", contenders)
    if MgPool is None:
        m.skipped["multigil InterpreterPoolExecutor"] = mg_pool_error
    return m


def pickled_items(res: Resources, quick: bool) -> Measurement:
    lst = [fractions.Fraction(i, 7) for i in range(FRACTIONS)]
    contenders: list[Contender] = []
    try:
        import cloudpickle
    except ImportError:
        dumps = pickle.dumps
    else:
        dumps = cloudpickle.dumps
    loads = pickle.loads
    contenders.append(Contender("cloudpickle dumps+loads x2 (in-process)",
                                lambda: loads(dumps(loads(dumps(lst, 5)), 5)),
                                kind="reference"))

    def mg_call() -> Callable[[], object]:
        interp = new_multigil_interp(res)
        call, identity = interp.call, tasks.identity
        assert call(identity, lst) == lst
        return lambda: call(identity, lst)

    contenders.insert(0, Contender("multigil call(identity, fractions)", setup=mg_call))

    def pipe() -> Callable[[], object]:
        conn = start_child(tasks.pipe_echo_server, res)
        send, recv = conn.send, conn.recv
        return lambda: (send(lst), recv())

    contenders.append(Contender("multiprocessing pipe send+recv", setup=pipe, kind="peer"))
    return Measurement("fractions_10k", "list of 10k Fractions there and back, per round trip",
                       contenders)


def handover(res: Resources, quick: bool) -> Measurement:
    """Hand 100 MiB to a worker, which writes both ends; read them back here."""
    size = HANDOVER_SIZE

    def read_back(buf: Any) -> None:
        if numpy is not None:
            arr = numpy.frombuffer(buf, dtype=numpy.uint8)
            ok = arr[0] == 0xAB and arr[-1] == 0xCD
        else:
            mv = memoryview(buf)
            ok = mv[0] == 0xAB and mv[-1] == 0xCD
            mv.release()
        if not ok:
            raise AssertionError("the worker's writes are not visible")

    def reset(buf: Any) -> None:
        mv = memoryview(buf)
        mv[0] = mv[-1] = 0
        mv.release()

    def shared_buffer() -> Callable[[], object]:
        interp = new_multigil_interp(res)
        buf = multigil.SharedBuffer(size)
        res.add(buf.release)
        call, touch = interp.call, tasks.touch_ends

        def op() -> None:
            call(touch, buf)
            read_back(buf)
        reset(buf)
        op()
        return op

    def exported_view() -> Callable[[], object]:
        interp = new_multigil_interp(res)
        data = bytearray(size)
        call, touch = interp.call, tasks.touch_ends

        def op() -> None:
            call(touch, memoryview(data))
            read_back(data)
        op()
        return op

    def create_release() -> None:
        multigil.SharedBuffer(size).release()

    contenders: list[Contender] = [
        Contender("multigil SharedBuffer: call + read back", setup=shared_buffer),
        Contender("multigil memoryview(bytearray): call + read back", setup=exported_view),
        Contender("multigil SharedBuffer(100 MiB) create+release", create_release),
    ]

    def shm_process() -> Callable[[], object]:
        from multiprocessing import shared_memory

        shm = shared_memory.SharedMemory(create=True, size=size)

        def free() -> None:
            shm.close()
            shm.unlink()

        res.add(free)
        conn = start_child(tasks.shm_touch_server, res)
        name = shm.name

        def op() -> None:
            conn.send(name)
            conn.recv()
            read_back(shm.buf)
        return op

    copy_src = bytearray(size)
    contenders += [
        Contender("multiprocessing.shared_memory, child process", setup=shm_process, kind="peer"),
        Contender("bytes(100 MiB): one copy", lambda: bytes(copy_src), kind="reference"),
    ]
    return Measurement("handover_100mib",
                       "zero-copy hand-over of 100 MiB (worker writes, main reads back)",
                       contenders)


# --------------------------------------------------------------- the run --

def run(measurements: list[Measurement], repeats: int, target: float) -> None:
    for m in measurements:
        kept = []
        for c in m.contenders:
            try:
                c.setup()
                c.calibrate(target)
            except Exception as exc:  # noqa: BLE001 - a broken peer must not stop the run
                m.skipped[c.name] = f"{type(exc).__name__}: {exc}"
                continue
            kept.append(c)
        m.contenders = kept
        for group in {c.group for c in kept if c.group is not None}:
            members = [c for c in kept if c.group == group]
            n = max(c.n for c in members)
            for c in members:
                c.n = n
    for r in range(repeats):
        for m in measurements:
            # Rotate the order every round, so no contender always goes first.
            k = r % max(1, len(m.contenders))
            for c in m.contenders[k:] + m.contenders[:k]:
                m.samples[c.name].append(c.sample())
                gc.collect()


def fmt(seconds: float) -> str:
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def targets(ms: dict[str, Measurement]) -> list[dict[str, Any]]:
    """The issue's targets, each checked against numbers from this run."""
    out: list[dict[str, Any]] = []

    def check(what: str, value: float | None, limit: float | None, note: str) -> None:
        met = None if value is None or limit is None else value <= limit
        out.append({"target": what, "value": value, "limit": limit, "met": met, "note": note})

    def med(key: str, name: str) -> float | None:
        m = ms[key]
        return m.median(name) if m.samples.get(name) else None

    check("Queue ping-pong <= 20 us", med("queue_ping_pong", "multigil.Queue (2 interpreters)"),
          20e-6, "per round trip")
    copy = med("arg_16mib", "bytearray(payload): one copy")
    check("16 MiB bytes <= 1.2 x bytearray(payload)",
          med("arg_16mib", "multigil call(len, bytes)"),
          None if copy is None else 1.2 * copy, "limit = 1.2 x the copy in this run")
    # "No copy": far below one copy; 2 % of it is ~60 us on a 2-core VM.
    for name in ("multigil call(len, memoryview)", "multigil call(len, SharedBuffer)"):
        check(f"{name.split('(len, ')[1][:-1]} argument: no copy",
              med("arg_16mib", name), None if copy is None else 0.02 * copy,
              "limit = 2% of one copy")
    check("100k ints round trip <= 5 ms", med("ints_100k", "multigil call(identity, lst)"),
          5e-3, "")
    check("100 MiB SharedBuffer hand-over in microseconds (<= 100 us)",
          med("handover_100mib", "multigil SharedBuffer: call + read back"), 100e-6,
          "call + worker write + numpy.frombuffer read")
    return out


def report(ms: list[Measurement], repeats: int) -> str:
    lines = [(f"Python {platform.python_version()} ({sys.implementation.name}) on "
              f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}; "
              f"medians of {repeats} interleaved rounds (min-max)")]
    for m in ms:
        lines.append("")
        lines.append(m.title)
        width = max([len(c.name) for c in m.contenders] + [10]) + 2
        base = None
        for c in m.contenders:
            if c.kind == "multigil" and base is None:
                base = m.median(c.name)
        for c in m.contenders:
            xs = m.samples[c.name]
            med = statistics.median(xs)
            tag = {"multigil": "", "peer": "  peer", "reference": "  ref"}[c.kind]
            rel = f"{med / base:8.1f}x" if base else ""
            lines.append(f"  {c.name:<{width}}{fmt(med):>10}  ({fmt(min(xs))}-{fmt(max(xs))})"
                         f"{rel}  n={c.n}{tag}")
        for name, why in m.skipped.items():
            lines.append(f"  {name:<{width}}  skipped: {why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", metavar="FILE", help="also write every sample as JSON")
    parser.add_argument("--quick", action="store_true", help="3 rounds of short samples")
    args = parser.parse_args(argv)
    repeats, target = (3, 0.02) if args.quick else (9, 0.1)

    res = Resources()
    try:
        ms = [ping_pong(res, args.quick), big_argument(res, args.quick),
              int_list(res, args.quick), handover(res, args.quick),
              pickled_items(res, args.quick)]
        run(ms, repeats, target)
    finally:
        res.close()

    print(report(ms, repeats))
    print("  (x: time relative to the first multigil line of the table; "
          "ref: a yardstick; peer: another way to do it)")
    checked = targets({m.key: m for m in ms})
    print("\nTargets")
    for t in checked:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        value = "-" if t["value"] is None else fmt(t["value"])
        limit = "-" if t["limit"] is None else fmt(t["limit"])
        print(f"  {verdict:>6}  {t['target']:<62} {value:>10}  (limit {limit}) {t['note']}")

    if args.json:
        out = {
            "python": platform.python_version(),
            "implementation": sys.implementation.name,
            "machine": platform.machine(),
            "system": platform.system(),
            "cpus": os.cpu_count(),
            "repeats": repeats,
            "numpy": None if numpy is None else numpy.__version__,
            "results": {
                m.key: {
                    "title": m.title,
                    "contenders": {
                        c.name: {"kind": c.kind, "n": c.n, "median": m.median(c.name),
                                 "min": min(m.samples[c.name]), "max": max(m.samples[c.name]),
                                 "samples": m.samples[c.name]}
                        for c in m.contenders},
                    "skipped": m.skipped,
                } for m in ms},
            "targets": checked,
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
