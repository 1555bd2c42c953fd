"""InterpreterPoolExecutor.map beyond the stdlib: chunking, unordered results,
lazy input, progress bars; a million tasks in flat memory; real parallelism."""

from __future__ import annotations

import bisect
import gc
import io
import itertools
import statistics
import sys
import time

import pytest

import executor_tasks as tasks
from helpers import rss_kib
from multigil import Event, InterpreterPoolExecutor
from multigil._executor import _chunks

pytestmark = pytest.mark.timeout(180)

TIMEOUT = 60


@pytest.fixture(scope="module")
def pool():
    with InterpreterPoolExecutor(2) as p:
        yield p


def chunk_sizes(it) -> list[int]:
    """The sizes of the chunks a map iterator has in flight (white box)."""
    return [task.chunk for task in it.gi_frame.f_locals["run"].live.values()]


# -------------------------------------------------------------- chunking --

def test_auto_chunksize_rule():
    assert _chunks.auto_chunksize(0, 2) == 1
    assert _chunks.auto_chunksize(10, 2) == 2
    assert _chunks.auto_chunksize(1000, 2) == 125
    assert _chunks.auto_chunksize(10**9, 2) == _chunks.CHUNK_CAP
    assert _chunks.auto_chunksize(100, 1) == 25


def test_map_chooses_chunks_from_the_length(pool):
    it = pool.map(tasks.square, range(1000))
    sizes = chunk_sizes(it)
    assert sizes == [125] * 8
    assert list(it) == [i * i for i in range(1000)]
    # unsized input is collected first (as the stdlib does), then cut the same way
    it = pool.map(tasks.square, (i for i in range(1000)))
    assert chunk_sizes(it) == [125] * 8
    assert sum(it) == sum(i * i for i in range(1000))


def test_map_explicit_chunksize(pool):
    it = pool.map(tasks.add, range(10), range(10), chunksize=3)
    assert chunk_sizes(it) == [3, 3, 3, 1]
    assert list(it) == [2 * i for i in range(10)]


def test_map_lazy_chunks_grow_for_tiny_tasks(pool):
    it = pool.map(abs, itertools.count(), buffersize=200_000)
    assert sum(itertools.islice(it, 300_000)) == sum(range(300_000))
    run = it.gi_frame.f_locals["run"]
    assert run.last_size > 64          # grew from 1
    assert run.inflight <= 200_000
    it.close()


def test_first_lazy_map_of_a_fresh_pool_grows_its_chunks():
    # A fresh worker's first task also pays for its imports.  That first
    # estimate of an item's cost must not fill the buffer with one-item
    # chunks: every later chunk then had room for one item only, and the
    # first map of a pool cost a task per item.
    n, buffersize = 200_000, 10_000
    with InterpreterPoolExecutor(2) as fresh:
        first_id = next(fresh._pool.ids)
        assert sum(fresh.map(abs, range(n), buffersize=buffersize)) == n * (n - 1) // 2
        chunks = next(fresh._pool.ids) - first_id - 1
    assert chunks < n // 100, f"{chunks} chunks for {n} items"


def test_lazy_chunks_in_flight_are_bounded(pool):
    it = pool.map(abs, itertools.count(), buffersize=100_000)
    for _ in itertools.islice(it, 50_000):
        assert len(chunk_sizes(it)) <= _chunks.CHUNKS_AHEAD * pool.max_workers
    it.close()


def test_map_lazy_chunks_stay_small_for_slow_tasks(pool):
    # 50 ms items against a 20 ms target: chunks of one item
    sizes = []
    results = []
    it = pool.map(tasks.slow_square, range(12), itertools.repeat(0.05), buffersize=1000)
    for r in it:
        results.append(r)
        if it.gi_frame is not None:
            sizes += chunk_sizes(it)
    assert results == [i * i for i in range(12)]
    assert max(sizes) == 1


# ------------------------------------------------------------- unordered --

def test_map_unordered_yields_what_is_ready(pool):
    release = Event()
    started = Event()
    n = 20
    it = pool.map(tasks.wait_event, [started] + [None] * (n - 1), [release] + [started] * (n - 1),
                  range(n), chunksize=1, ordered=False)
    first = [next(it) for _ in range(n - 1)]    # all but the blocked one
    assert sorted(first) == list(range(1, n))
    release.set()
    assert list(it) == [0]


def test_map_unordered_all_results_and_errors(pool):
    assert sorted(pool.map(tasks.square, range(5000), ordered=False)) == \
        sorted(i * i for i in range(5000))
    with pytest.raises(ValueError, match="bad item 7"):
        list(pool.map(tasks.fail_on, range(10), itertools.repeat(7), ordered=False, chunksize=1))


def test_map_unordered_timeout(pool):
    release = Event()
    it = pool.map(tasks.wait_event, [None], [release], ordered=False, timeout=0.05)
    with pytest.raises(TimeoutError):
        next(it)
    release.set()


def test_map_unordered_lazy(pool):
    got = sorted(itertools.islice(pool.map(tasks.square, itertools.count(), buffersize=64,
                                           ordered=False), 1000))
    assert len(got) == 1000 and got[0] == 0


# -------------------------------------------------------------- progress --

def test_map_progress_bar(pool):
    pytest.importorskip("tqdm")
    out = io.StringIO()
    results = list(pool.map(tasks.square, range(1000), progress={"file": out, "mininterval": 0}))
    assert results == [i * i for i in range(1000)]
    assert "1000/1000" in out.getvalue()


def test_map_progress_without_tqdm(pool, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(ImportError, match=r"multigil\[progress\]"):
        pool.map(tasks.square, range(3), progress=True)


# ------------------------------------------------- throughput and memory --

def test_a_million_tiny_tasks_in_flat_memory(pool):
    n = 1_000_000
    # Two warm-up runs: the first reaches the peak number of chunks in
    # flight; RSS then stays at that plateau unless something leaks.
    for _ in range(2):
        assert sum(pool.map(abs, range(n))) == n * (n - 1) // 2
    gc.collect()  # garbage of earlier tests must not be freed, or not, in between
    before = rss_kib()
    t0 = time.perf_counter()
    total = 0
    for r in pool.map(abs, range(n)):
        total += r
    elapsed = time.perf_counter() - t0
    gc.collect()
    after = rss_kib()
    assert total == n * (n - 1) // 2
    assert after - before < 4 * 1024, f"RSS grew by {after - before} KiB"
    # the target is 1,000,000/s (benchmarks/bench_executor.py); here, a floor
    # that a loaded 2-vCPU machine still clears
    assert n / elapsed > 100_000, f"{n / elapsed:,.0f} tasks/s"


def test_a_million_tasks_lazily_in_flat_memory(pool):
    n = 1_000_000
    sum(pool.map(abs, range(n), buffersize=50_000))                 # warm-up
    before = rss_kib()
    assert sum(pool.map(abs, range(n), buffersize=50_000)) == n * (n - 1) // 2
    after = rss_kib()
    assert after - before < 4 * 1024, f"RSS grew by {after - before} KiB"


# ------------------------------------------------------------ parallelism --

def _unpreempted(slices):
    med = statistics.median(e - s for s, e in slices)
    return [(s, e) for s, e in slices if e - s <= 2 * med]


def _overlap_fraction(a, b) -> float:
    """Share of a's unpreempted slices that overlap one of b's in time."""
    a, b = _unpreempted(a), _unpreempted(b)
    starts = [s for s, _ in b]
    hits = 0
    for s, e in a:
        j = bisect.bisect_left(starts, e) - 1
        if j >= 0 and b[j][1] > s:
            hits += 1
    return hits / len(a)


def test_cpu_bound_tasks_run_in_parallel():
    """Two workers' work slices overlap in time.

    Each task records (start, end) of short slices of pure-Python work, on the
    process-wide monotonic clock.  Under one shared GIL, two slices that were
    not preempted can never overlap; under two GILs on two CPUs, they do.  The
    machine may be busy (other processes on few CPUs), so a few rounds are
    allowed for the two workers to be on CPUs at the same time, and a small
    share of overlapping slices is proof enough: threads sharing one GIL,
    measured the same way as a control, show none.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as tp:
        a, b = [f.result(TIMEOUT) for f in [tp.submit(tasks.work_slices, 0.25, 500)
                                           for _ in range(2)]]
    assert _overlap_fraction(a, b) < 0.005 and _overlap_fraction(b, a) < 0.005

    with InterpreterPoolExecutor(2) as p:
        started, release = [Event(), Event()], Event()
        warm = [p.submit(tasks.wait_event, s, release) for s in started]
        for s in started:
            assert s.wait(TIMEOUT)         # both workers up
        release.set()
        for f in warm:
            f.result(TIMEOUT)
        best = 0.0
        # Up to 30 rounds (about 8 s, only when the CPUs are taken): other
        # suites running on a 2-vCPU machine can hold one CPU for seconds.
        for _ in range(30):
            a, b = [f.result(TIMEOUT) for f in
                    [p.submit(tasks.work_slices, 0.25, 500) for _ in range(2)]]
            best = max(best, _overlap_fraction(a, b), _overlap_fraction(b, a))
            if best > 0.05:
                break
        assert best > 0.02, f"work slices overlapped {best:.1%} at best"
