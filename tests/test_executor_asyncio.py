"""InterpreterPoolExecutor and asyncio: pool.run, pool.amap, run_in_executor,
and multigil.run on the default pool."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import itertools
import os
import subprocess
import sys
import textwrap

import pytest

import executor_tasks as tasks
import multigil
from multigil import Event, InterpreterPoolExecutor

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 60


@pytest.fixture(scope="module")
def pool():
    with InterpreterPoolExecutor(2) as p:
        yield p


def arun(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


async def until_set(event: Event) -> None:
    """Wait for a multigil.Event without blocking the loop."""
    assert await asyncio.to_thread(event.wait, TIMEOUT)


# ------------------------------------------------------------------- run --

def test_run(pool):
    async def main():
        a = await pool.run(tasks.square, 7)
        b = await pool.run(tasks.kw, 1, b=2)
        return a, b

    assert arun(main()) == (49, (1, 2, 0))


def test_run_many_concurrently(pool):
    async def main():
        return await asyncio.gather(*(pool.run(tasks.square, i) for i in range(200)))

    assert arun(main()) == [i * i for i in range(200)]


def test_run_exception(pool):
    async def main():
        with pytest.raises(tasks.CustomError):
            await pool.run(tasks.raise_custom, 3)

    arun(main())


def test_cancelling_the_awaiting_task_interrupts_a_running_call():
    with InterpreterPoolExecutor(1) as p:
        me = p.submit(tasks.interp_id).result(TIMEOUT)

        async def main():
            started = Event()
            task = asyncio.ensure_future(p.run(tasks.spin_forever, started))
            await until_set(started)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # the worker survived and is free
            return await p.run(tasks.interp_id)

        assert arun(main()) == me


def test_cancelling_the_awaiting_task_cancels_a_queued_call():
    with InterpreterPoolExecutor(1) as p:
        async def main():
            started, release, ran = Event(), Event(), Event()
            blocker = asyncio.ensure_future(p.run(tasks.wait_event, started, release, "b"))
            await until_set(started)
            queued = asyncio.ensure_future(p.run(tasks.wait_event, ran, ran))
            await asyncio.sleep(0)          # one loop turn: it is submitted
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            release.set()
            assert await blocker == "b"
            assert await p.run(tasks.square, 3) == 9   # FIFO: after the cancelled one
            return ran.is_set()

        assert arun(main()) is False


def test_asyncio_timeout_interrupts_the_call():
    with InterpreterPoolExecutor(1) as p:
        async def main():
            with pytest.raises((asyncio.TimeoutError, TimeoutError)):
                await asyncio.wait_for(p.run(tasks.spin_forever), 0.1)
            return await p.run(tasks.square, 4)

        assert arun(main()) == 16


def test_run_in_executor(pool):
    async def main():
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, tasks.add, 2, 3)

    assert arun(main()) == 5


# ------------------------------------------------------------------ amap --

def test_amap(pool):
    async def main():
        return [r async for r in pool.amap(tasks.square, range(100))]

    assert arun(main()) == [i * i for i in range(100)]


def test_amap_several_iterables_and_chunks(pool):
    async def main():
        return [r async for r in pool.amap(tasks.add, range(50), range(50), chunksize=7)]

    assert arun(main()) == [2 * i for i in range(50)]


def test_amap_unordered(pool):
    async def main():
        return sorted([r async for r in pool.amap(tasks.square, range(300), ordered=False)])

    assert arun(main()) == sorted(i * i for i in range(300))


def test_amap_lazy_infinite(pool):
    async def main():
        out = []
        agen = pool.amap(abs, itertools.count(), buffersize=1000)
        async for r in agen:
            out.append(r)
            if len(out) == 5000:
                break
        await agen.aclose()
        return out

    assert arun(main()) == list(range(5000))


def test_amap_error_keeps_order(pool):
    async def main():
        got = []
        with pytest.raises(ValueError, match="bad item 4"):
            async for r in pool.amap(tasks.fail_on, range(10), itertools.repeat(4), chunksize=1):
                got.append(r)
        return got

    assert arun(main()) == [0, 1, 2, 3]


def test_cancelling_amap_interrupts_running_chunks():
    with InterpreterPoolExecutor(2) as p:
        started, release = [Event(), Event()], Event()
        held = [p.submit(tasks.interp_id_when_released, s, release) for s in started]
        for s in started:
            assert s.wait(TIMEOUT)              # each worker holds one
        release.set()
        me = {f.result(TIMEOUT) for f in held}
        assert len(me) == 2

        async def consume(started):
            async for _ in p.amap(tasks.spin_forever, [started, None, None], chunksize=1):
                pass

        async def main():
            started = Event()
            task = asyncio.ensure_future(consume(started))
            await until_set(started)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return [await p.run(tasks.square, i) for i in range(4)]

        assert arun(main()) == [0, 1, 4, 9]
        assert {p.submit(tasks.interp_id).result(TIMEOUT) for _ in range(10)} <= me


# --------------------------------------------------------- multigil.run --

def test_multigil_run_default_pool():
    async def main():
        a = await multigil.run(tasks.square, 9)
        b = await multigil.run(lambda x, y=1: x + y, 1, y=5)
        return a, b

    assert arun(main()) == (81, 6)
    from multigil.executor import default_pool

    assert default_pool() is default_pool()
    assert isinstance(default_pool(), InterpreterPoolExecutor)
    assert isinstance(default_pool().submit(tasks.noop), cf.Future)


def test_multigil_run_in_a_script_exits_cleanly():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import asyncio, multigil
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)
        async def main():
            return await asyncio.gather(*(multigil.run(fib, 18) for _ in range(4)))
        print(asyncio.run(main()))
    """)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[2584, 2584, 2584, 2584]"
    assert proc.stderr == ""
