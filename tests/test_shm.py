"""Tests of SharedBuffer and the zero-copy buffer kinds (src/multigil/_core/shm.c)."""

from __future__ import annotations

import array
import ctypes
import gc
import io
import operator
import pickle
import struct
import threading

import pytest

from multigil import _core
from multigil._errors import NotShareableError

pytestmark = pytest.mark.timeout(120)

SharedBuffer = _core.SharedBuffer
roundtrip = _core._roundtrip


# --------------------------------------------------------------- the object --

def test_public_name() -> None:
    import multigil

    assert multigil.SharedBuffer is SharedBuffer
    assert SharedBuffer.__module__ == "multigil"
    assert "Parameters" in (SharedBuffer.__doc__ or "")


@pytest.mark.parametrize("size", [0, 1, 63, 64, 4096, 1 << 20])
def test_size_zero_filled_and_aligned(size: int) -> None:
    buf = SharedBuffer(size)
    assert len(buf) == buf.size == buf.nbytes == size
    mv = memoryview(buf)
    assert mv.nbytes == size and not mv.readonly and mv.format == "B"
    assert mv.tobytes() == bytes(size)
    if size:
        addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        assert addr % 64 == 0
    mv.release()


def test_keyword_and_bad_sizes() -> None:
    assert SharedBuffer(size=3).size == 3
    with pytest.raises(ValueError, match=">= 0"):
        SharedBuffer(-1)
    with pytest.raises(TypeError):
        SharedBuffer(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SharedBuffer()  # type: ignore[call-arg]
    with pytest.raises((MemoryError, OverflowError)):
        SharedBuffer(1 << 62)
    with pytest.raises(TypeError):
        class Sub(SharedBuffer):  # type: ignore[misc, valid-type]
            pass


def test_ids_unique_eq_hash() -> None:
    a, b = SharedBuffer(1), SharedBuffer(1)
    assert a.id != b.id and isinstance(a.id, int)
    assert a != b and a == a
    assert a != 1 and not (a == "x")
    assert {a: 1}[a] == 1
    a2 = roundtrip(a)
    assert a2 is not a and a2 == a and hash(a2) == hash(a) and a2.id == a.id


def test_repr() -> None:
    buf = SharedBuffer(10)
    assert repr(buf) == f"<multigil.SharedBuffer id={buf.id} size=10>"
    buf.release()
    assert "released" in repr(buf)


def test_buffer_protocol_consumers() -> None:
    buf = SharedBuffer(32)
    struct.pack_into("<iq", buf, 4, -7, 2**40)
    assert struct.unpack_from("<iq", buf, 4) == (-7, 2**40)
    mv = memoryview(buf).cast("i")
    assert mv[1] == -7
    mv.release()
    assert io.BytesIO(b"hello").readinto(buf) == 5
    assert bytes(buf)[:5] == b"hello"
    arr = array.array("b")
    arr.frombytes(buf)
    assert len(arr) == 32
    c = (ctypes.c_uint8 * 32).from_buffer(buf)
    c[31] = 9
    assert bytes(buf)[31] == 9
    del c


def test_numpy_frombuffer_writes_in_place() -> None:
    np = pytest.importorskip("numpy")
    buf = SharedBuffer(8 * 100)
    arr = np.frombuffer(buf, dtype=np.float64)
    arr[:] = np.arange(100)
    other = np.frombuffer(roundtrip(buf), dtype=np.float64)
    assert other[99] == 99.0 and arr.flags.writeable
    del arr, other


# ------------------------------------------------------------------ release --

def test_release_refused_while_views_exist() -> None:
    buf = SharedBuffer(8)
    mv = memoryview(buf)
    with pytest.raises(BufferError, match="release them first"):
        buf.release()
    assert not buf.released
    mv[0] = 1      # still fully usable
    mv.release()
    buf.release()
    assert buf.released


def test_every_use_after_release_raises_value_error() -> None:
    buf = SharedBuffer(8)
    ident = buf.id
    h = hash(buf)
    buf.release()
    for use in (len, memoryview, bytes, operator.attrgetter("size"), operator.attrgetter("nbytes"),
                operator.attrgetter("id"), lambda b: b.__enter__(),
                lambda b: struct.pack_into("b", b, 0, 1)):
        with pytest.raises((ValueError, TypeError)) as info:
            use(buf)
        if info.type is ValueError:
            assert f"SharedBuffer {ident} was released" in str(info.value)
    buf.release()          # releasing again is harmless
    assert hash(buf) == h   # still usable as a dict key
    with pytest.raises(NotShareableError, match="released"):
        roundtrip(buf)


def test_memoryview_of_released_buffer_message() -> None:
    buf = SharedBuffer(8)
    buf.release()
    with pytest.raises(ValueError, match="was released"):
        memoryview(buf)


def test_context_manager() -> None:
    with SharedBuffer(4) as buf:
        memoryview(buf)[0] = 1
    assert buf.released
    with pytest.raises(BufferError):
        with SharedBuffer(4) as buf2:
            mv = memoryview(buf2)
    mv.release()
    buf2.release()


def test_memory_lives_while_any_reference_does() -> None:
    a = SharedBuffer(1 << 16)
    memoryview(a)[-1] = 77
    b = roundtrip(a)          # a second wrapper: a second reference
    a.release()
    assert memoryview(b)[-1] == 77
    in_list = roundtrip([b, b])
    del b
    gc.collect()
    assert memoryview(in_list[0])[-1] == 77 and in_list[0] == in_list[1]


def test_many_wrappers_and_threads() -> None:
    buf = SharedBuffer(8)
    copies: list[object] = []

    def work() -> None:
        for _ in range(2000):
            w = roundtrip(buf)
            copies.append(w)
            if len(copies) > 50:
                copies.pop(0)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    copies.clear()
    assert len(buf) == 8


def test_not_picklable() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(SharedBuffer(1))


class HoldsBuffer:
    def __init__(self) -> None:
        self.buf = SharedBuffer(1)


def test_inside_a_pickled_object_is_not_shareable() -> None:
    with pytest.raises(NotShareableError, match="HoldsBuffer"):
        roundtrip(HoldsBuffer())


def test_natively_shared_in_containers() -> None:
    buf = SharedBuffer(4)
    out = roundtrip({"buf": buf, "items": (buf, [buf])})
    assert out["buf"] == buf and out["items"][1][0] == buf
    assert _core._is_natively_shareable(buf)
    buf.release()
    assert not _core._is_natively_shareable(buf)


# ----------------------------------------------------------- ForeignBuffer --

def test_foreign_buffer_attributes() -> None:
    ba = bytearray(100)
    fb = roundtrip(memoryview(ba)).obj
    assert type(fb).__name__ == "ForeignBuffer" and type(fb).__module__ == "multigil"
    assert fb.nbytes == 100 and fb.readonly is False
    assert "nbytes=100" in repr(fb)
    ro = roundtrip(memoryview(b"abc")).obj
    assert ro.readonly is True and "readonly" in repr(ro)
    with pytest.raises(TypeError):
        type(fb)()
    with pytest.raises(AttributeError):
        fb.nbytes = 1


# ------------------------------------------------------ across interpreters --

@pytest.fixture(scope="module")
def interp():  # type: ignore[no-untyped-def]
    interpreters = pytest.importorskip("multigil.interpreters")
    it = interpreters.create()
    yield it
    it.close()


def test_cross_interpreter_same_memory(interp) -> None:  # type: ignore[no-untyped-def]
    buf = SharedBuffer(16)
    interp.call(struct.pack_into, "<q", buf, 8, 123456789)
    assert struct.unpack_from("<q", buf, 8) == (123456789,)
    struct.pack_into("<q", buf, 0, -5)
    assert interp.call(struct.unpack_from, "<q", buf, 0) == (-5,)
    back = interp.call(lambda b: b, buf)
    assert back == buf and back is not buf
    assert interp.call(lambda b: (b.id, b.size, len(b)), buf) == (buf.id, 16, 16)


def test_cross_interpreter_buffer_made_inside_outlives_it() -> None:
    interpreters = pytest.importorskip("multigil.interpreters")

    def make() -> object:
        import struct

        import multigil

        b = multigil.SharedBuffer(1 << 20)
        struct.pack_into("<I", b, (1 << 20) - 4, 0xCAFE)
        return b

    it = interpreters.create()
    try:
        buf = it.call(make)
    finally:
        it.close()
    gc.collect()
    assert struct.unpack_from("<I", buf, (1 << 20) - 4) == (0xCAFE,)
    buf.release()


def test_cross_interpreter_release_inside(interp) -> None:  # type: ignore[no-untyped-def]
    buf = SharedBuffer(8)

    def use_and_release(b: object) -> bool:
        m = memoryview(b)  # type: ignore[arg-type]
        m[0] = 5
        m.release()
        b.release()  # type: ignore[attr-defined]
        return b.released  # type: ignore[attr-defined, no-any-return]

    assert interp.call(use_and_release, buf) is True
    assert memoryview(buf)[0] == 5 and not buf.released


def test_cross_interpreter_numpy_result_out_of_band(interp) -> None:  # type: ignore[no-untyped-def]
    # numpy does not load in isolated interpreters; a big PickleBuffer made
    # there still arrives zero-copy (a chunk viewed by a ForeignBuffer).
    def make() -> object:
        import pickle

        class Box:
            def __init__(self, pb: object) -> None:
                self.pb = pb

            def __reduce_ex__(self, protocol: int) -> object:
                return (bytes, (self.pb,))

        return Box(pickle.PickleBuffer(bytearray(b"z" * (1 << 18))))

    out = interp.call(make)
    assert out == b"z" * (1 << 18)


def test_cross_interpreter_view_kept_inside_blocks_resize_until_dropped(interp) -> None:  # type: ignore[no-untyped-def]
    ba = bytearray(b"abcdef")
    interp.exec("import sys; sys.modules['__main__'].keep = []")
    keep_append = interp.call(lambda: None)  # warm up
    del keep_append

    def keep(mv: memoryview) -> int:
        import __main__

        __main__.keep.append(mv)
        return len(__main__.keep)

    def drop() -> None:
        import __main__

        __main__.keep.clear()

    mv = memoryview(ba)
    interp.call(keep, mv)
    ba[0] = ord("A")
    assert interp.call(lambda: bytes(__import__("__main__").keep[0])) == b"Abcdef"
    with pytest.raises(BufferError):
        mv.release()          # still lent to the other interpreter
    interp.call(drop)
    _core._run_deferred()
    mv.release()
    ba.extend(b"!")
