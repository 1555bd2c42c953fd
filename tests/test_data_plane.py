"""Behaviours that docs/data.md promises and the per-file tests do not cover.

Lending memory (who may be closed while views exist), queue items outliving
the interpreter that put them, a million items through a queue with flat
memory, numpy reading what another interpreter wrote into a SharedBuffer, and
the public ``is_shareable``.

Functions run inside interpreters are nested (they travel by value) or live in
a module this file writes to a temporary directory: a module-level function of
this file would make the interpreter import pytest.  No test sleeps to
synchronise: the queues and calls under test do that.
"""

from __future__ import annotations

import gc
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import multigil
from multigil import _core
from multigil._errors import InterpreterError, QueueClosed

interpreters = pytest.importorskip("multigil.interpreters")

pytestmark = pytest.mark.timeout(120)

LENDS = "still lends buffers"


@pytest.fixture
def interps() -> Iterator[Any]:
    """Factory of interpreters; those still open are closed at teardown."""
    made: list[Any] = []

    def make() -> Any:
        interp = interpreters.create()
        made.append(interp)
        return interp

    yield make
    for interp in made:
        try:
            interp.close()
        except interpreters.InterpreterNotFoundError:
            pass
        except InterpreterError:
            interp.call(int)     # entering runs releases deferred to it
            interp.close()


@pytest.fixture
def keeper(tmp_path: Path) -> Iterator[Any]:
    """A throw-away importable module (a fresh name per test) whose functions
    keep what they are given in a module global, and lend memory of their own.

    Its functions cross by name, as users' module functions do (and are
    cached by the receiving interpreter)."""
    name = f"dp_keeper_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        KEPT = []
        OWN = []

        def keep(value):
            KEPT.append(value)
            return len(KEPT)

        def drop():
            KEPT.clear()

        def lend(size):
            data = bytearray(b"L" * size)
            OWN.append(data)
            return memoryview(data)

        def put_view(q, size):
            data = bytearray(b"Q" * size)
            OWN.append(data)
            q.put({"view": memoryview(data)})

        def noop():
            return None
    """))
    sys.path.insert(0, str(tmp_path))   # new interpreters start with this sys.path
    try:
        yield __import__(name)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def _resizable(data: bytearray) -> bool:
    """True once nothing holds a buffer export of `data` any more."""
    _core._run_deferred()    # releases other interpreters deferred to us
    try:
        data.append(0)
    except BufferError:
        return False
    data.pop()
    return True


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


# --------------------------------------------------------------------------
# Lending memory: memoryviews are exports of their owner's objects
# --------------------------------------------------------------------------


def test_lender_cannot_be_closed_while_its_view_is_alive(interps, keeper) -> None:  # type: ignore[no-untyped-def]
    lender = interps()
    view = lender.call(keeper.lend, 64)
    assert type(view) is memoryview and bytes(view[:2]) == b"LL" and not view.readonly
    with pytest.raises(InterpreterError, match=LENDS) as info:
        lender.close()
    assert str(lender.id) in str(info.value)
    assert lender.call(keeper.noop) is None     # refused, and left intact
    view.release()
    del view
    gc.collect()
    lender.call(keeper.noop)     # entering the lender runs its deferred release
    lender.close()


def test_lender_cannot_be_closed_while_its_view_is_queued(interps, keeper) -> None:  # type: ignore[no-untyped-def]
    lender = interps()
    q = multigil.Queue()
    lender.call(keeper.put_view, q, 32)
    with pytest.raises(InterpreterError, match=LENDS):
        lender.close()
    item = q.get_nowait()
    assert bytes(item["view"]) == b"Q" * 32
    item["view"].release()
    del item
    gc.collect()
    lender.call(keeper.noop)
    lender.close()


def test_dropping_a_queue_that_holds_a_view_frees_the_lender(interps, keeper) -> None:  # type: ignore[no-untyped-def]
    lender = interps()
    q = multigil.Queue()
    lender.call(keeper.put_view, q, 16)
    del q     # the last reference: the queued item goes with it
    gc.collect()
    lender.call(keeper.noop)
    lender.close()


def test_lender_can_be_closed_as_soon_as_the_view_is_released(interps, keeper) -> None:  # type: ignore[no-untyped-def]
    lender = interps()
    view = lender.call(keeper.lend, 64)
    view.release()
    del view
    gc.collect()
    lender.close()


def test_borrower_may_be_closed_and_its_views_are_released(interps) -> None:  # type: ignore[no-untyped-def]
    data = bytearray(b"main")
    borrower = interps()
    borrower.prepare_main(view=memoryview(data))
    borrower.exec("kept = [view]\ndel view")
    assert not _resizable(data)
    borrower.close()             # the main interpreter lends; the borrower may go
    assert _resizable(data)


def test_borrower_closed_releases_views_kept_in_module_globals(interps, keeper) -> None:  # type: ignore[no-untyped-def]
    data = bytearray(b"main")
    borrower = interps()
    assert borrower.call(keeper.keep, memoryview(data)) == 1
    borrower.close()
    assert _resizable(data)


def test_view_lent_between_two_subinterpreters(interps, keeper) -> None:  # type: ignore[no-untyped-def]
    lender, borrower = interps(), interps()
    q = multigil.Queue()
    lender.call(keeper.put_view, q, 8)

    def read_and_release(q: Any) -> bytes:
        item = q.get_nowait()
        out = bytes(item["view"])
        item["view"].release()
        return out

    with pytest.raises(InterpreterError, match=LENDS):
        lender.close()
    assert borrower.call(read_and_release, q) == b"Q" * 8
    borrower.close()
    lender.call(keeper.noop)     # the release was deferred to the lender
    lender.close()


# --------------------------------------------------------------------------
# Queue items belong to no interpreter
# --------------------------------------------------------------------------


def test_every_kind_of_item_outlives_the_interpreter_that_put_it(interps) -> None:  # type: ignore[no-untyped-def]
    q, inner = multigil.Queue(), multigil.Queue()
    lock, event = multigil.Lock(), multigil.Event()
    putter = interps()

    def put_all(q: Any, inner: Any, lock: Any, event: Any) -> None:
        import fractions

        import multigil

        buf = multigil.SharedBuffer(1 << 16)
        memoryview(buf)[-3:] = b"end"
        inner.put("inner item")
        q.put(2**200 + 1)                            # a big int
        q.put(fractions.Fraction(22, 7))             # by pickle
        q.put({"buf": buf, "q": inner, "lock": lock, "event": event})   # handles
        q.put(("x" * 10_000, b"y" * 100_000))        # large payloads
        event.set()

    putter.call(put_all, q, inner, lock, event)
    putter.close()
    import fractions

    assert q.get_nowait() == 2**200 + 1
    assert q.get_nowait() == fractions.Fraction(22, 7)
    shared = q.get_nowait()
    assert bytes(memoryview(shared["buf"])[-3:]) == b"end"
    assert shared["q"] == inner and shared["q"].get_nowait() == "inner item"
    assert shared["lock"] == lock and shared["event"].is_set()
    assert q.get_nowait() == ("x" * 10_000, b"y" * 100_000)
    shared["buf"].release()


def test_closed_queue_still_drains_after_the_putter_is_closed(interps) -> None:  # type: ignore[no-untyped-def]
    q = multigil.Queue()
    putter = interps()
    putter.call(lambda q: (q.put(1), q.put(2), q.close()), q)
    putter.close()
    assert [q.get(), q.get()] == [1, 2]
    with pytest.raises(QueueClosed):
        q.get(timeout=0)


# --------------------------------------------------------------------------
# A million items, flat memory
# --------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")
@pytest.mark.no_sanitizer  # ASan keeps freed memory in quarantine: RSS means nothing there
def test_million_items_between_interpreters_with_flat_rss(interps) -> None:  # type: ignore[no-untyped-def]
    producer = interps()
    q = multigil.Queue(maxsize=10_000)

    def produce(q: Any, n: int) -> None:
        for i in range(n):
            q.put(i)
        q.put(None)

    def run(n: int) -> int:
        thread = producer.call_in_thread(produce, q, n)
        total = 0
        while (x := q.get(timeout=60)) is not None:
            total += x
        thread.join()
        return total

    run(10_000)     # warm: the thread state, the function cache, the ring
    before = _rss_mib()
    n = 1_000_000
    assert run(n) == n * (n - 1) // 2
    growth = _rss_mib() - before
    assert growth < 32, f"RSS grew by {growth:.1f} MiB over 1,000,000 items"
    assert q.qsize() == 0


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")
@pytest.mark.no_sanitizer  # ASan keeps freed memory in quarantine: RSS means nothing there
def test_repeated_bursts_do_not_grow_memory() -> None:
    q = multigil.Queue()
    n = 300_000

    def burst() -> None:
        for i in range(n):
            q.put(i)
        for _ in range(n):
            q.get_nowait()

    burst()
    after_first = _rss_mib()
    for _ in range(3):
        burst()
    growth = _rss_mib() - after_first
    assert growth < 16, f"RSS grew by {growth:.1f} MiB over 3 more bursts"


# --------------------------------------------------------------------------
# SharedBuffer and numpy in the main interpreter
# --------------------------------------------------------------------------


def test_numpy_reads_what_a_worker_wrote_without_a_copy(interps) -> None:  # type: ignore[no-untyped-def]
    np = pytest.importorskip("numpy")
    worker = interps()
    buf = multigil.SharedBuffer(8 << 20)
    arr = np.frombuffer(buf, dtype=np.int64)
    assert arr.flags.writeable and arr.size == (8 << 20) // 8

    def fill(buf: Any) -> int:
        mv = memoryview(buf).cast("q")
        for i in range(0, len(mv), 4096):
            mv[i] = i
        mv[-1] = -1
        n = len(mv)
        mv.release()
        return n

    assert worker.call(fill, buf) == arr.size
    assert arr[4096 * 3] == 4096 * 3 and arr[-1] == -1     # the same memory
    arr[1] = 42                                            # and back the other way
    assert worker.call(lambda b: memoryview(b).cast("q")[1], buf) == 42
    with pytest.raises(BufferError):
        buf.release()        # the array still views it
    del arr
    buf.release()


# --------------------------------------------------------------------------
# Identity, nesting, is_shareable
# --------------------------------------------------------------------------


def test_shared_substructure_arrives_as_separate_copies(interps) -> None:  # type: ignore[no-untyped-def]
    interp = interps()
    inner = [1, 2]
    seen_inside = interp.call(lambda v: v[0] is v[1], [inner, inner])
    assert seen_inside is False
    back = interp.call(lambda v: v, [inner, inner])
    assert back == [inner, inner] and back[0] is not back[1]


def test_nesting_limit_is_one_thousand_containers(interps) -> None:  # type: ignore[no-untyped-def]
    def nest(n: int) -> Any:
        value: Any = 0
        for _ in range(n):
            value = [value]
        return value

    q = multigil.Queue()
    q.put(nest(1000))
    assert q.get_nowait() == nest(1000)
    with pytest.raises(multigil.NotShareableError, match="deeper than 1000"):
        q.put(nest(1001))
    # A call's arguments travel inside two tuples of its own (the call and
    # its positional arguments): 998 levels are left for each argument.
    interp = interps()
    assert interp.call(len, nest(998)) == 1
    with pytest.raises(multigil.NotShareableError, match="deeper than 1000"):
        interp.call(len, nest(999))


def test_public_is_shareable_matches_the_documented_list() -> None:
    import fractions

    native: list[Any] = [None, True, 7, 2**100, 1.5, 2j, "s", b"b", bytearray(b"x"), (1,), [1], {1: 2},
              {1}, frozenset(), memoryview(b"m"), multigil.Queue(), multigil.SharedBuffer(1),
              multigil.Lock(), multigil.RLock(), multigil.Event(), multigil.Semaphore(),
              multigil.BoundedSemaphore(), multigil.Condition(),
              {"nested": [(1, {2.0: b"x"}), frozenset({"a"})]}]
    for value in native:
        assert interpreters.is_shareable(value), value
    pickled = [fractions.Fraction(1, 2), object(), [object()], {"k": fractions.Fraction(1)},
               type("Sub", (str,), {})("x"), sys.intern]
    for value in pickled:
        assert not interpreters.is_shareable(value), value
    released = multigil.SharedBuffer(1)
    released.release()
    assert not interpreters.is_shareable(released)
