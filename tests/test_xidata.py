"""Tests of the cross-interpreter encoding of values (src/multigil/_core/xidata.h: encode.c, decode.c).

Most tests go through ``_core._roundtrip(obj, flags)``: encode as for another
interpreter, decode in this one.  It runs the same code as a real crossing,
minus the interpreter switch, so properties can be checked fast and in bulk;
the tests at the end cross into a real interpreter.
"""

from __future__ import annotations

import array
import collections
import decimal
import enum
import fractions
import math
import operator
import pickle
import socket
import struct
import sys
import threading
import time
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multigil import _core
from multigil._errors import ExecutionFailed, NotShareableError

pytestmark = pytest.mark.timeout(120)

BORROW = _core.ENCODE_BORROW
LEND = _core.ENCODE_LEND
MAX_DEPTH = 1000

roundtrip = _core._roundtrip


# ------------------------------------------------------------------ helpers --

def same(a: object, b: object) -> bool:
    """Equal, with the same exact types all the way down (and nan == nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("d", a) == struct.pack("d", b)  # type: ignore[arg-type]
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)  # type: ignore[union-attr]
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)  # type: ignore[call-overload, index]
    return a == b


def check(obj: object, flags: int = 0) -> object:
    out = roundtrip(obj, flags)
    assert same(obj, out), (obj, out)
    return out


# ------------------------------------------------------------------ scalars --

INTS = [0, 1, -1, 127, 128, -128, -129, 2**15 - 1, 2**15, -(2**15), -(2**15) - 1,
        2**30 - 1, 2**30, -(2**30), 2**31 - 1, 2**31, -(2**31), -(2**31) - 1,
        2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, -(2**64), 2**64 - 1,
        10**30, -(10**30), 2**1000 + 12345, -(3**2000)]


@pytest.mark.parametrize("value", INTS, ids=repr)
def test_int(value: int) -> None:
    check(value)
    check(value, BORROW)


def test_huge_int_is_linear_and_exact() -> None:
    big = 7**200_000 + 1          # ~560k bits: far beyond int/str digit limits
    t = time.perf_counter()
    assert roundtrip(big) == big
    assert roundtrip(-big) == -big
    assert time.perf_counter() - t < 2.0


@pytest.mark.parametrize("value", [None, True, False])
def test_singletons_keep_identity(value: object) -> None:
    assert roundtrip(value) is value


@pytest.mark.parametrize("value", [0.0, -0.0, 1.5, -2.25e-308, 5e-324, 1.7976931348623157e308,
                                   math.inf, -math.inf, math.nan, math.pi])
def test_float(value: float) -> None:
    check(value)


def test_float_nan_payload_survives() -> None:
    odd_nan = struct.unpack("d", struct.pack("Q", 0x7FF8_0000_DEAD_BEEF))[0]
    out = roundtrip(odd_nan)
    assert struct.pack("d", out) == struct.pack("d", odd_nan)


@pytest.mark.parametrize("value", [0j, 1 + 2j, complex(-0.0, math.inf), complex(math.nan, -1)])
def test_complex(value: complex) -> None:
    check(value)


STRINGS = ["", "a", "ascii text", "caf\xe9", "\xff" * 3, "\u20ac uro", "\uffff",
           "\U0001f600 smile", "\U0010ffff", "\ud800", "\udfff", "a\ud800b\udc00c",
           "\U0001f600\ud800", "\x00nul\x00", "x" * 10_000, "\u20ac" * 5_000,
           "\U0001f600" * 3_000]


@pytest.mark.parametrize("value", STRINGS, ids=lambda s: repr(s[:12]))
def test_str_exact_including_lone_surrogates(value: str) -> None:
    for flags in (0, BORROW):
        out = check(value, flags)
        assert [ord(c) for c in out] == [ord(c) for c in value]  # type: ignore[union-attr]
        check((value,), flags)


@pytest.mark.parametrize("value", [b"", b"\x00", b"abc", bytes(range(256)), b"z" * 100_000])
def test_bytes_and_bytearray(value: bytes) -> None:
    check(value)
    check(value, BORROW)
    check(bytearray(value))
    out = roundtrip(bytearray(value))
    assert type(out) is bytearray
    out.append(1)  # a real, resizable bytearray


def test_bytearray_is_a_copy() -> None:
    ba = bytearray(b"abc")
    out = roundtrip(ba)
    out[0] = 0
    assert ba == b"abc"


# --------------------------------------------------------------- containers --

def test_containers_nested() -> None:
    value = {"a": [1, (2, 3.5, None), {"b": {b"k": frozenset({1, (2, 3)})}}],
             (1, 2): {1, 2, 3}, 3: [], 4: (), 5: {}, 6: set(), 7: frozenset(),
             None: [[[[[]]]]], 1.5: "x", b"y": bytearray(b"z")}
    check(value)
    check(value, BORROW)
    check([value] * 3)


def test_dict_order_and_key_types_kept() -> None:
    d = {3: "c", 1: "a", "2": "b", 2.5: None, (1,): 1, True: 0}
    out = roundtrip(d)
    assert list(out) == list(d)
    assert [type(k) for k in out] == [type(k) for k in d]


def test_sets() -> None:
    for s in ({1, "a", (1, 2), None}, frozenset({1, frozenset({2})}), set(range(1000))):
        out = roundtrip(s)
        assert out == s and type(out) is type(s)


def test_results_are_fresh_objects() -> None:
    inner = [1]
    value = [inner, inner]
    out = roundtrip(value)
    assert out == value and out[0] is not inner
    out[0].append(2)
    assert inner == [1]


def test_large_list_of_ints() -> None:
    value = list(range(-50_000, 150_000))
    assert roundtrip(value) == value
    assert roundtrip(tuple(value)) == tuple(value)


def test_depth_limit() -> None:
    ok: list[object] = []
    for _ in range(MAX_DEPTH - 1):
        ok = [ok]
    assert roundtrip(ok) == ok
    deep: object = ok
    for _ in range(5):
        deep = (deep,)
    with pytest.raises(NotShareableError, match=f"deeper than {MAX_DEPTH} levels"):
        roundtrip(deep)


@pytest.mark.parametrize("kind", ["list", "dict", "nested"])
def test_self_reference_is_refused(kind: str) -> None:
    if kind == "list":
        value: object = []
        value.append(value)  # type: ignore[attr-defined]
    elif kind == "dict":
        value = {}
        value["me"] = value  # type: ignore[index]
    else:
        a: list[object] = []
        value = {"x": (1, a)}
        a.append(value)
    with pytest.raises(NotShareableError, match="nesting deeper than"):
        roundtrip(value)
    assert not _core._is_natively_shareable(value)


# ------------------------------------------------------------------- borrow --

def test_borrow_references_large_payloads_only_under_tuples() -> None:
    big = b"b" * 100_000
    text = "t" * 100_000
    # Referenced in place: the stream holds a pointer, not the payload.
    assert _core._encoded_size((big, (text,)), BORROW) < 100
    # Not borrowed through mutable containers: another thread could drop them.
    assert _core._encoded_size([big], BORROW) > len(big)
    assert _core._encoded_size({"k": big}, BORROW) > len(big)
    assert _core._encoded_size((bytearray(big),), BORROW) > len(big)
    # Not borrowed without the flag, nor when small.
    assert _core._encoded_size((big,)) > len(big)
    assert _core._encoded_size((b"s" * 100,), BORROW) > 100
    check((big, [big], text, {"t": text}), BORROW)


def test_lend_references_large_bytes_and_str_anywhere() -> None:
    big = b"b" * 100_000
    text = "\u20ac" * 50_000
    value = ([big], {"k": text, text: (big,)}, {big}, frozenset([text]))
    # Each payload is a handle that keeps the object alive: no copy in the stream.
    assert _core._encoded_size(value, LEND) < 200
    assert _core._encoded_size(value, BORROW | LEND) < 200
    # The blob holds one reference to the object until it is dropped.
    before = sys.getrefcount(big)
    check(value, LEND)
    check((big, [big], text, {"t": text}), BORROW | LEND)
    assert sys.getrefcount(big) == before
    # Never lent: a bytearray (it may be resized), small payloads, subclasses.
    assert _core._encoded_size([bytearray(big)], LEND) > len(big)
    assert _core._encoded_size([b"s" * 100], LEND) > 100
    assert _core._encoded_size([b"s" * 4096], LEND) < 100
    check([MyStr(text)], LEND)


@pytest.mark.parametrize("text", ["a" * 5000, "\xe9" * 5000, "\u20ac" * 3000, "\U0001f600" * 2000,
                                  "\ud800" * 3000])
def test_lent_str_keeps_its_kind_and_code_points(text: str) -> None:
    out = check([text], LEND)
    assert out == [text]


def test_lent_payloads_in_a_queue_are_copied_by_the_taker() -> None:
    q = _core.Queue()
    big = b"q" * 100_000
    before = sys.getrefcount(big)
    q.put([big, big.decode()])
    # The main interpreter lends: the queued item holds the object, not a copy.
    assert sys.getrefcount(big) == before + 1
    got = q.get()
    assert got == [big, big.decode()] and got[0] is not big
    assert sys.getrefcount(big) == before


def test_refs_rejected_in_a_blob_not_built_to_carry_them() -> None:
    # A stream made with BORROW names raw pointers; decoding it without the
    # flag (as _decode_raw does) must refuse, never dereference them.
    value = (b"x" * 10_000,)
    raw = _core._encode_raw(value)
    assert _core._decode_raw(raw) == value


# ----------------------------------------------------------------- pickling --

Point = collections.namedtuple("Point", "x y")


class Color(enum.IntEnum):
    RED = 1


class MyStr(str):
    pass


class MyDict(dict):  # type: ignore[type-arg]
    pass


class Plain:
    def __init__(self, x: object) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return type(other) is Plain and other.x == self.x


@pytest.mark.parametrize("value", [
    Point(1, 2), Color.RED, MyStr("s"), MyDict(a=1),
    collections.OrderedDict(a=1, b=2), collections.defaultdict(list, {"a": [1]}),
    collections.deque([1, 2]), collections.Counter("hello"),
    fractions.Fraction(1, 3), range(3, 10, 2), slice(1, 2), Plain([1, {"a": 2}]),
    [Point(1, 2), {"p": Plain(3)}], array.array("d", [1.0, 2.0]),
    int, len,
], ids=lambda v: type(v).__name__)
def test_subclasses_and_others_are_pickled_with_their_type(value: object) -> None:
    out = roundtrip(value)
    assert type(out) is type(value)
    assert out == value
    if isinstance(value, collections.defaultdict):
        assert out.default_factory is list  # type: ignore[attr-defined]
    assert not _core._is_natively_shareable(value)


def test_bool_is_not_an_int_here() -> None:
    out = roundtrip([True, 1, False, 0])
    assert [type(x) for x in out] == [bool, int, bool, int]


def test_lambdas_and_closures_travel_by_value() -> None:
    k = 10
    fn = roundtrip(lambda x: x + k)
    assert fn(1) == 11


def test_natively_shareable() -> None:
    for value in [None, 1, 2**100, 1.5, 1j, "s", b"b", bytearray(), (1, [2, {3: {4}}]),
                  frozenset({1}), memoryview(b"x"), _core.SharedBuffer(1)]:
        assert _core._is_natively_shareable(value), value
    for value in [Point(1, 2), [Point(1, 2)], {"a": Plain(1)}, object(), len]:
        assert not _core._is_natively_shareable(value), value


def test_wrapper_subtypes_travel_as_handles() -> None:
    # BoundedSemaphore derives from Semaphore: it travels as the same object.
    bsem = getattr(_core, "BoundedSemaphore", None)
    if bsem is None:
        pytest.skip("no BoundedSemaphore")
    sem = bsem(2)
    out = roundtrip([sem])[0]
    assert type(out) is bsem and out.id == sem.id
    assert _core._is_natively_shareable({"s": sem})


@pytest.mark.parametrize("make", [socket.socket, threading.Lock, lambda: (i for i in [])],
                         ids=["socket", "lock", "generator"])
def test_unpicklable_raises_not_shareable_with_cause(make) -> None:  # type: ignore[no-untyped-def]
    obj = make()
    try:
        with pytest.raises(NotShareableError) as info:
            roundtrip([1, {"k": obj}])
    finally:
        if isinstance(obj, socket.socket):
            obj.close()
    msg = str(info.value)
    assert f"cannot send an object of type '{type(obj).__qualname__}' to another interpreter" in msg
    assert "picklable" in msg and "SharedBuffer" in msg
    assert info.value.__cause__ is not None
    assert isinstance(info.value, ValueError)
    assert str(info.value.__cause__).rstrip(".") in msg


def test_socket_message_matches_the_documented_one() -> None:
    with socket.socket() as s, pytest.raises(NotShareableError) as info:
        roundtrip(s)
    assert str(info.value) == (
        "cannot send an object of type 'socket' to another interpreter: cannot pickle "
        "'socket' object. Send picklable data, a memoryview, or a multigil.SharedBuffer.")
    assert isinstance(info.value.__cause__, TypeError)


class RaisesIn:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __reduce__(self):  # type: ignore[no-untyped-def]
        raise self.exc


def test_reduce_errors_are_wrapped_but_interrupts_are_not() -> None:
    with pytest.raises(NotShareableError) as info:
        roundtrip(RaisesIn(ValueError("nope")))
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(KeyboardInterrupt):
        roundtrip([RaisesIn(KeyboardInterrupt())])
    with pytest.raises(MemoryError):
        roundtrip({"a": RaisesIn(MemoryError())})


class Mutator:
    """Pickling it mutates the container being encoded around it."""

    def __init__(self, action) -> None:  # type: ignore[no-untyped-def]
        self.action = action

    def __reduce__(self):  # type: ignore[no-untyped-def]
        self.action()
        return (int, ())


def test_container_mutated_while_pickling_cannot_change_what_was_sent() -> None:
    # Non-native items are pickled together once the walk is over: a
    # __reduce__ that mutates the containers around it runs too late to change
    # (or crash) the walk, and what is sent is the value as it was.
    lst: list[object] = [1, 2]
    lst.insert(0, Mutator(lst.clear))
    assert roundtrip(lst) == [0, 1, 2]
    assert lst == []

    grow: list[object] = []
    grow.extend([Mutator(lambda: grow.extend(range(10))), 1])
    assert roundtrip(grow) == [0, 1]
    assert len(grow) == 12

    d: dict[object, object] = {}
    d.update(a=Mutator(d.clear), b=[1, 2, 3], c=3)
    assert roundtrip(d) == {"a": 0, "b": [1, 2, 3], "c": 3}
    assert d == {}

    # An inner list dropped by its parent before the pickling is still sent.
    outer: list[object] = []
    inner = [Mutator(outer.clear), "x" * 100]
    outer.append(inner)
    del inner
    assert roundtrip(outer) == [[0, "x" * 100]]


def test_replacing_an_item_while_encoding_is_safe() -> None:
    lst: list[object] = [None, [1, 2, 3]]

    def replace() -> None:
        lst[1] = "replaced"

    lst[0] = Mutator(replace)
    out = roundtrip(lst)
    assert out[0] == 0 and out[1] in ([1, 2, 3], "replaced")


# ---------------------------------------------- pickle's out-of-band buffers --

class OOB:
    """Pickles its payload out of band (protocol 5), as numpy arrays do."""

    def __init__(self, data: bytes | bytearray) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: int):  # type: ignore[no-untyped-def]
        return (_rebuild_oob, (pickle.PickleBuffer(self.data),))


def _rebuild_oob(buf: object) -> tuple[object, bytes]:
    mv = memoryview(buf)  # type: ignore[arg-type]
    return (type(mv.obj), bytes(mv))


@pytest.mark.parametrize("size", [0, 10, 64 * 1024 - 1, 64 * 1024, 1 << 20])
def test_out_of_band_buffers(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    holder, data = roundtrip([OOB(bytearray(payload)), OOB(payload)])
    assert holder[1] == payload and data[1] == payload
    if size >= 64 * 1024:
        # Big buffers are viewed in place (one copy in total), read-only.
        assert holder[0].__name__ == "ForeignBuffer"


def test_out_of_band_chunk_is_read_only_and_outlives_the_blob() -> None:
    captured = roundtrip(_Keep(bytearray(b"q" * (1 << 17))))
    mv = memoryview(captured)
    assert mv.readonly and mv.nbytes == 1 << 17
    assert bytes(mv[:3]) == b"qqq"
    with pytest.raises(TypeError):
        mv[0] = 1
    del captured
    assert bytes(mv[-2:]) == b"qq"   # the view keeps the chunk alive


class _Keep:
    def __init__(self, data: bytearray) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: int):  # type: ignore[no-untyped-def]
        return (_identity, (pickle.PickleBuffer(self.data),))


def _identity(x: object) -> object:
    return x


def test_numpy_arrays_out_of_band() -> None:
    np = pytest.importorskip("numpy")
    small = np.arange(10, dtype=np.int32)
    big = np.arange(1 << 16, dtype=np.float64).reshape(256, 256)
    fortran = np.asfortranarray(big)
    for arr in (small, big, fortran, big[::2]):
        out = roundtrip(arr)
        assert type(out) is np.ndarray and out.dtype == arr.dtype
        assert (out == arr).all()
    out = roundtrip({"a": big})["a"]
    assert out.base is not None   # a view of the chunk, not a copy


# ------------------------------------------- non-native items, pickled once --

@pytest.fixture
def pickle_calls(monkeypatch):  # type: ignore[no-untyped-def]
    """Count the pickle calls of the encoder (multigil._pickler.dumps builds
    one Pickler per call, of the class it looks up in its module each time)."""
    from multigil import _pickler

    base = _pickler._pickler_class()
    calls = []

    class Counting(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            calls.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(_pickler, "_Pickler", Counting)
    roundtrip([Point(0, 0)])
    assert calls, "the encoder did not pickle through multigil._pickler.dumps"
    calls.clear()
    return calls


@pytest.mark.parametrize("make", [
    lambda: [fractions.Fraction(i, 7) for i in range(1000)],
    lambda: {f"k{i}": decimal.Decimal(i) / 7 for i in range(1000)},
    lambda: [[fractions.Fraction(i, 3)] for i in range(1000)],
    lambda: (list(range(1000)), {fractions.Fraction(1, 2)}, [Point(i, i) for i in range(100)]),
    lambda: [_core.Queue(), memoryview(b"mv")] + [fractions.Fraction(i, 7) for i in range(100)],
], ids=["list", "dict", "nested", "mixed", "with-handles"])
def test_non_native_items_are_pickled_in_one_call(pickle_calls, make) -> None:  # type: ignore[no-untyped-def]
    value = make()
    out = roundtrip(value)
    assert len(pickle_calls) == 1
    if isinstance(value, list) and isinstance(value[0], _core.Queue):
        assert out[0] == value[0] and bytes(out[1]) == b"mv"
        out[1].release()
        _run_deferred()
        value, out = value[2:], out[2:]
    assert same(out, value)


def test_native_values_are_not_pickled(pickle_calls) -> None:  # type: ignore[no-untyped-def]
    check([1, "two", (3.0, b"4"), {5: {6}}, frozenset({7})])
    roundtrip([_core.Queue(), memoryview(b"x")])
    _run_deferred()
    assert pickle_calls == []


def test_containers_around_pickled_items_keep_their_exact_types() -> None:
    value = [1, (fractions.Fraction(1, 3), [Point(1, 2)]), {"f": {fractions.Fraction(1, 2)}},
             frozenset({Color.RED, 4}), bytearray(b"ba"), True, MyStr("s")]
    assert same(roundtrip(value), value)
    assert not _core._is_natively_shareable(value)


def test_queue_and_fraction_in_one_list() -> None:
    q = _core.Queue()
    out = roundtrip([q, fractions.Fraction(1, 3), {"q": q, "d": decimal.Decimal("0.1")}])
    assert type(out[0]) is _core.Queue and out[0] == q and out[0].id == q.id
    assert type(out[1]) is fractions.Fraction and out[1] == fractions.Fraction(1, 3)
    assert out[2]["q"] == q and out[2]["d"] == decimal.Decimal("0.1")
    out[0].put("through the copy")          # the same queue, not a copy of it
    assert q.get_nowait() == "through the copy"


def test_memoryview_next_to_pickled_items_stays_zero_copy() -> None:
    ba = bytearray(b"hello")
    out = roundtrip((memoryview(ba), fractions.Fraction(1, 2), [Point(1, 2)]))
    assert type(out[0].obj).__name__ == "ForeignBuffer"
    out[0][0] = ord("J")
    assert ba == b"Jello"
    assert out[1] == fractions.Fraction(1, 2) and out[2] == [Point(1, 2)]
    out[0].release()


def test_shared_references_between_pickled_items_survive() -> None:
    # One pickle call for all of them: its memo keeps them one object, as
    # pickle.loads(pickle.dumps(value)) would.
    x = Plain([1])
    out = roundtrip([x, {"k": x}, (x, 2)])
    assert out[0] is out[1]["k"] is out[2][0]
    assert out[0] == x and out[0] is not x


def test_one_unpicklable_item_among_many_is_named() -> None:
    with socket.socket() as s, pytest.raises(NotShareableError) as info:
        roundtrip([fractions.Fraction(1, 2)] * 3 + [{"s": s}, Point(1, 2)])
    assert "cannot send an object of type 'socket' to another interpreter" in str(info.value)
    assert isinstance(info.value.__cause__, TypeError)


def test_pickled_items_with_out_of_band_buffers() -> None:
    big = bytes(range(256)) * 1024
    out = roundtrip([1, OOB(bytearray(big)), "s", OOB(b"small")])
    assert out[0] == 1 and out[2] == "s"
    assert out[1][1] == big and out[3][1] == b"small"
    assert out[1][0].__name__ == "ForeignBuffer"


def test_table_blob_keeps_ucs2_and_ucs4_aligned() -> None:
    value = [Point(0, 0), "\u20ac" * 3, "a", "\U0001f600" * 3, b"x", "\u20ac"]
    assert same(roundtrip(value), value)
    assert same(_core._decode_raw(_core._encode_raw(value)), value)


MIXED = st.recursive(
    st.none() | st.integers() | st.text() | st.binary()
    | st.fractions() | st.decimals(allow_nan=False) | st.builds(Point, st.integers(), st.integers()),
    lambda children: (
        st.lists(children, max_size=6)
        | st.lists(children, max_size=6).map(tuple)
        | st.dictionaries(st.integers() | st.text() | st.fractions(), children, max_size=6)
        | st.frozensets(st.integers() | st.fractions(), max_size=6)
    ),
    max_leaves=30,
)


@given(MIXED)
def test_property_mixed_roundtrip(value: object) -> None:
    check(value)
    check(value, BORROW)
    assert same(_core._decode_raw(_core._encode_raw(value)), value)


# ------------------------------------------------------------- memoryviews --

def test_memoryview_of_bytearray_is_zero_copy_and_writable() -> None:
    ba = bytearray(b"hello")
    out = roundtrip(memoryview(ba))
    assert type(out) is memoryview and type(out.obj).__name__ == "ForeignBuffer"
    assert not out.readonly and bytes(out) == b"hello"
    out[0] = ord("J")   # same memory
    assert ba == b"Jello"
    out.release()


def test_memoryview_of_bytes_stays_read_only() -> None:
    out = roundtrip(memoryview(b"abc"))
    assert out.readonly and bytes(out) == b"abc"
    with pytest.raises(TypeError):
        out[0] = 1
    with pytest.raises(TypeError, match="read-write"):
        struct.pack_into("B", out.obj, 0, 1)   # a writable request is refused


@pytest.mark.parametrize("make", [
    lambda: memoryview(array.array("d", [1.5, 2.5, 3.5])),
    lambda: memoryview(array.array("i", range(12))).cast("B").cast("i", [3, 4]),
    lambda: memoryview(bytearray(range(20)))[::3],
    lambda: memoryview(array.array("q", [7])).cast("B").cast("q", []),
    lambda: memoryview(b"")[0:0],
], ids=["floats", "2d", "strided", "0d", "empty"])
def test_memoryview_format_shape_strides(make) -> None:  # type: ignore[no-untyped-def]
    mv = make()
    out = roundtrip(mv)
    assert (out.format, out.itemsize, out.ndim, out.shape, out.strides, out.readonly,
            out.nbytes) == (mv.format, mv.itemsize, mv.ndim, mv.shape, mv.strides,
                            mv.readonly, mv.nbytes)
    assert out.tolist() == mv.tolist()
    assert out.c_contiguous == mv.c_contiguous and out.f_contiguous == mv.f_contiguous
    if mv.c_contiguous:
        assert out.tobytes() == mv.tobytes()
        assert bytes(out.obj) == mv.tobytes()  # simple requests work on the ForeignBuffer


def test_non_contiguous_foreign_buffer_refuses_simple_requests() -> None:
    out = roundtrip(memoryview(bytearray(10))[::2])
    with pytest.raises((BufferError, TypeError)):
        zlib.crc32(out.obj)  # PyBUF_SIMPLE needs C-contiguous memory
    assert zlib.crc32(roundtrip(memoryview(bytearray(10))).obj) == zlib.crc32(bytes(10))


def test_memoryview_keeps_its_exporter_busy_until_released() -> None:
    ba = bytearray(b"xyz")
    mv = memoryview(ba)
    out = roundtrip(mv)
    del out
    _run_deferred()
    mv.release()            # the export let go of its view
    ba.append(0)            # and of the bytearray: it can resize again


def _run_deferred() -> None:
    # Releases are deferred to the owner interpreter (here: this one): they run
    # when it next enters another interpreter, or now, through this.
    _core._run_deferred()


def test_released_memoryview_is_not_shareable() -> None:
    mv = memoryview(b"abc")
    mv.release()
    with pytest.raises(NotShareableError, match="memoryview"):
        roundtrip(mv)


def test_foreign_buffer_not_constructible() -> None:
    fb_type = type(roundtrip(memoryview(b"x")).obj)
    with pytest.raises(TypeError):
        fb_type()


# --------------------------------------------------------- malformed blobs --

NATIVE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-2**200, max_value=2**200)
    | st.floats(allow_nan=True) | st.complex_numbers() | st.text() | st.binary()
    | st.binary().map(bytearray) | st.text(alphabet=st.characters(codec=None)),
    lambda children: (
        st.lists(children, max_size=6)
        | st.lists(children, max_size=6).map(tuple)
        | st.dictionaries(st.none() | st.integers() | st.text() | st.binary(), children, max_size=6)
        | st.frozensets(st.integers() | st.text(), max_size=6)
        | st.sets(st.integers() | st.text() | st.tuples(st.integers()), max_size=6)
    ),
    max_leaves=30,
)


@given(NATIVE)
def test_property_native_roundtrip(value: object) -> None:
    check(value)
    check(value, BORROW)
    assert _core._is_natively_shareable(value)
    assert same(_core._decode_raw(_core._encode_raw(value)), value)


@given(NATIVE, st.data())
def test_property_corrupted_streams_raise_or_decode_never_crash(value: object, data) -> None:  # type: ignore[no-untyped-def]
    raw = bytearray(_core._encode_raw(value))
    n = data.draw(st.integers(1, 4))
    for _ in range(n):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip" and raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "cut" and raw:
            del raw[data.draw(st.integers(0, len(raw) - 1)):]
        else:
            raw.insert(data.draw(st.integers(0, len(raw))), data.draw(st.integers(0, 255)))
    try:
        _core._decode_raw(bytes(raw))
    except (ValueError, TypeError, OverflowError, MemoryError, pickle.UnpicklingError,
            EOFError, AttributeError, ImportError, IndexError, KeyError):
        pass


def test_every_truncation_raises() -> None:
    raw = _core._encode_raw([1, 2**70, "\u20ac\U0001f600", b"x", (1.5, {"k": {3}}), Point(1, 2)])
    for i in range(len(raw)):
        with pytest.raises(Exception):
            _core._decode_raw(raw[:i])
    with pytest.raises(ValueError, match="trailing"):
        _core._decode_raw(raw + b"\x01")


@given(st.binary(max_size=64))
def test_random_bytes_never_crash(data: bytes) -> None:
    try:
        _core._decode_raw(data)
    except Exception:
        pass


def _tag(value: object) -> bytes:
    return _core._encode_raw(value)[:1]


def _hostile() -> list[bytes]:
    list_, tuple_, ucs2, bytes_ = _tag([]), _tag(()), _tag("\u20ac"), _tag(b"")
    # The tags right after BYTES, STR4 and FROZENSET are BYTES_REF, STR_REF
    # and HANDLE (see the format table in blob.h).
    bytes_ref = bytes([bytes_[0] + 1])
    str_ref = bytes([_tag("\U0001f600")[0] + 1])
    handle_tag = bytes([_tag(frozenset())[0] + 1])
    return [
        list_ + b"\xff" * 9 + b"\x01",                    # 2**64-1 items
        tuple_ + b"\xff" * 10 + b"\x01",                  # varint too long
        ucs2 + b"\xff" * 8 + b"\x7f",                      # huge UCS2 string
        handle_tag + b"\x00", handle_tag + b"\x05",        # handles that don't exist
        bytes_ref + b"\x08" + b"\x00" * 16,                # pointers in a plain blob
        str_ref + b"\x01\x08" + b"\x00" * 8,
        b"\xee", b"",
    ] + _hostile_tables()


def _hostile_tables() -> list[bytes]:
    # PICKLE_REF and TABLE come right after PICKLE (a pickled value's tag).
    pickle_tag = _tag(Point(1, 2))[0]
    ref, table = bytes([pickle_tag + 1]), bytes([pickle_tag + 2])
    good = _core._encode_raw([Point(1, 2)])
    assert good[:1] == table
    n = int.from_bytes(good[1:8], "little")
    stream, pickled = good[8:8 + n], good[8 + n:]
    assert stream == _tag([]) + b"\x01" + ref + b"\x00"
    not_a_list = _core._encode_raw(Point(1, 2))

    def blob(stream: bytes, tail: bytes) -> bytes:
        return table + len(stream).to_bytes(7, "little") + stream + tail

    return [
        ref + b"\x00",                                     # a reference without a table
        _tag([]) + b"\x01" + ref + b"\x00",
        table, table + b"\x00" * 6,                          # truncated headers
        table + b"\xff" * 7 + stream + pickled,             # stream longer than the blob
        blob(stream, b""),                                  # no table behind the stream
        blob(stream, _tag(1) + b"\x01"),                   # the table is not a pickle
        blob(stream, not_a_list),                           # the table is not a list
        blob(stream[:-1] + b"\x01", pickled),              # index past the table
        blob(stream[:-1] + b"\x80" + b"\xff" * 9, pickled),  # index varint too long
        blob(stream, pickled + b"\x00"),                   # trailing data
        blob(stream + b"\x00", pickled),                   # trailing data in the stream
        blob(_tag([]) + b"\x01" + good, pickled),          # a table inside a table
    ]


@pytest.mark.parametrize("raw", _hostile())
def test_hostile_headers(raw: bytes) -> None:
    with pytest.raises((ValueError, MemoryError)):
        _core._decode_raw(raw)


# ------------------------------------------------------------------- speed --

def _best(fn, n: int = 5) -> float:  # type: ignore[no-untyped-def]
    best = math.inf
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def test_speed_is_linear_and_in_the_right_league() -> None:
    # Loose bounds (loaded CI machines): these catch quadratic growth or a
    # per-item allocation, not a few percent.
    ints = list(range(100_000))
    rt = _best(lambda: roundtrip(ints))
    ref = _best(lambda: pickle.loads(pickle.dumps(ints, 5)))
    assert rt < max(3 * ref, 0.02), (rt, ref)
    big = b"x" * (16 << 20)
    borrow = _best(lambda: roundtrip((big,), BORROW))
    copy = _best(lambda: bytearray(big))
    assert borrow < 3 * copy + 0.005, (borrow, copy)
    assert _core._encoded_size(("fn", b"", (1,), {})) < 32


# ------------------------------------------------------ across interpreters --

@pytest.fixture(scope="module")
def interp():  # type: ignore[no-untyped-def]
    interpreters = pytest.importorskip("multigil.interpreters")
    it = interpreters.create()
    yield it
    it.close()


def _echo(x: object) -> object:
    return x


CROSS_VALUES = [None, True, 0, -5, 2**64 + 1, -(10**40), 1.5, math.inf, 2j, "", "\u20ac\ud800",
                "\U0001f600" * 100, b"bytes", bytearray(b"ba"), (1, (2,)), [1, [2]],
                {"a": {1: [None]}}, {1, 2}, frozenset({"x"}), fractions.Fraction(1, 3),
                collections.OrderedDict(z=1), [b"x" * 200_000], ("s" * 100_000,)]


@pytest.mark.parametrize("value", CROSS_VALUES, ids=lambda v: type(v).__name__)
def test_cross_interpreter_identity(interp, value: object) -> None:  # type: ignore[no-untyped-def]
    out = interp.call(operator.itemgetter(0), (value,))
    assert same(value, out)


def test_cross_interpreter_types_seen_inside(interp) -> None:  # type: ignore[no-untyped-def]
    value = [1, 2**70, "s", b"b", bytearray(), (1,), {"k": 1}, {1}, frozenset(), 1.0, 1j, None, True]
    names = interp.call(lambda v: [type(x).__name__ for x in v], value)
    assert names == [type(x).__name__ for x in value]


def test_cross_interpreter_big_bytes_argument(interp) -> None:  # type: ignore[no-untyped-def]
    payload = bytes(range(256)) * (1 << 16)   # 16 MiB
    assert interp.call(len, payload) == len(payload)
    assert interp.call(lambda b: b[-256:], payload) == payload[-256:]


def test_cross_interpreter_memoryview_writes_through(interp) -> None:  # type: ignore[no-untyped-def]
    ba = bytearray(8)
    mv = memoryview(ba)
    interp.call(operator.setitem, mv, slice(0, 3), b"abc")
    assert ba[:3] == b"abc"
    assert interp.call(bytes, memoryview(b"ro")) == b"ro"
    with pytest.raises(ExecutionFailed, match="TypeError: cannot modify read-only memory"):
        interp.call(operator.setitem, memoryview(b"ro"), 0, 1)
    shape = interp.call(lambda m: (m.format, m.shape, m.tolist()),
                        memoryview(array.array("i", range(6))).cast("B").cast("i", [2, 3]))
    assert shape == ("i", (2, 3), [[0, 1, 2], [3, 4, 5]])


def test_cross_interpreter_memoryview_released_after_use(interp) -> None:  # type: ignore[no-untyped-def]
    ba = bytearray(b"abc")
    mv = memoryview(ba)
    assert interp.call(bytes, mv) == b"abc"
    _run_deferred()
    mv.release()     # BufferError if the receiver's export was still alive
    ba.extend(b"more")


def test_cross_interpreter_unpicklable_argument(interp) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotShareableError, match="'lock'"):
        interp.call(_echo, threading.Lock())


def test_cross_interpreter_tiny_call_is_fast(interp) -> None:  # type: ignore[no-untyped-def]
    interp.call(abs, 1)
    per_call = _best(lambda: [interp.call(abs, 1) for _ in range(1000)]) / 1000
    assert per_call < 200e-6, per_call


def test_sys_getrefcount_unchanged_by_encoding() -> None:
    value = ["x" * 10, b"y" * 10_000, (1.5,)]
    before = [sys.getrefcount(v) for v in value]
    for _ in range(100):
        roundtrip(value, BORROW)
    assert [sys.getrefcount(v) for v in value] == before
