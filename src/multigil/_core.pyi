"""Type stub of the C extension ``multigil._core`` (sources: src/multigil/_core/*.c).

Keep in step with the C code: tests/test_stub.py checks that the names here and
the names of the built module agree, and ``python -m mypy.stubtest
multigil._core`` checks signatures against the docstring signatures of the C
code.

Functions of the C code that take ``METH_O`` / ``METH_FASTCALL`` without keywords
are positional-only here; methods whose C code accepts keywords (PyArg_Parse*
with a kwlist, or ``mg_parse_args``) are positional-or-keyword.
"""

from collections.abc import Buffer, Callable
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeAlias, TypeVar, final, type_check_only

_T = TypeVar("_T")

# An exception described as plain data by multigil._remote.capture():
# (type name, qualname, module, str(exc), formatted traceback, pickled exception
# or None, pickled (args, attributes) or why not or None).  Only a best-effort
# fallback built by the C code has None in more places, so its items are not
# typed one by one.
_ExcInfo: TypeAlias = tuple[Any, ...]

# Flags of _roundtrip()/_encoded_size(): borrow large bytes/str of the value
# being encoded instead of copying them (MG_ENCODE_BORROW in blob.h), and lend
# them, kept alive by their owner until copied (MG_ENCODE_LEND).
ENCODE_BORROW: Final = 1
ENCODE_LEND: Final = 2

# ------------------------------------------------- module.c (is_shareable: xidata.c) --

def create(bootstrap: str, /) -> int:
    """Create an isolated interpreter with its own GIL, run ``bootstrap`` in it, return its id."""

def destroy(
    id: int,
    /,
    timeout: float | None = 0.0,
    *,
    wait_callers: bool = False,
    interrupt: bool = False,
    abandon_exports: bool = False,
) -> None:
    """Close the interpreter ``id`` (created by multigil); threads it started are
    waited for ``timeout`` seconds, and with ``wait_callers`` calls made into it
    too; ``interrupt`` raises SystemExit in them first; ``abandon_exports`` ends
    it although it lends buffers.  InterpreterError names what still runs."""

def is_running(id: int, /) -> bool:
    """Whether some thread runs in interpreter ``id``: a call, or a thread it started."""

def current_frames() -> dict[int, Any]:
    """``sys._current_frames()`` for the current interpreter's threads only (installed as it)."""

def current_exceptions() -> dict[int, BaseException | None]:
    """``sys._current_exceptions()`` for the current interpreter's threads only."""

def call(
    id: int,
    fn: Callable[..., object],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    /,
) -> tuple[bool | None, Any]:
    """``fn(*args, **kwargs)`` in interpreter ``id``: ``(True, result)``, ``(False, excinfo)``
    if it raised, or ``(None, excinfo)`` if something could not cross (NotShareableError)."""

def exec(id: int, source: str, /) -> _ExcInfo | None:
    """Run ``source`` in ``__main__`` of interpreter ``id``: None, or the excinfo of its error."""

def set_main_attrs(id: int, ns: dict[str, Any], /) -> _ExcInfo | None:
    """Bind the names of ``ns`` in ``__main__`` of interpreter ``id``: None, or an excinfo."""

def import_in_main(name: str, /) -> bool:
    """Import module ``name`` in the main interpreter; whether that succeeded."""

def list_all() -> list[tuple[int, str]]:
    """``(id, whence)`` of every known interpreter."""

def get_current() -> int:
    """Id of the current interpreter."""

def get_main() -> int:
    """Id of the main interpreter."""

def status(id: int, /) -> tuple[str, int] | None:
    """``(whence, threads running inside)`` of interpreter ``id``, or None if it is gone."""

def _forget_functions() -> None:
    """Drop this interpreter's caches of functions sent to it and from it."""

def _renew_thread_states(id: int, /) -> None:
    """Replace the thread states kept for interpreter ``id`` by one new one, this thread's."""

def is_shareable(obj: object, /) -> bool:
    """Whether ``obj`` crosses interpreters natively (no pickle)."""

# ---------------------------------------------------------------- xidata.c --
# Test and benchmark helpers of the cross-interpreter encoding.

def _roundtrip(obj: object, flags: int = 0, /) -> Any:
    """Encode ``obj`` as for another interpreter and decode it here."""

def _encoded_size(obj: object, flags: int = 0, /) -> int:
    """Size in bytes of the encoded form of ``obj`` (handles not counted)."""

def _encode_raw(obj: object, /) -> bytes:
    """The encoded stream of ``obj`` (ValueError if it needs handles)."""

def _decode_raw(data: Buffer, /) -> Any:
    """Decode a stream made by ``_encode_raw`` (ValueError if malformed)."""

def _is_natively_shareable(obj: object, /) -> bool:
    """True if ``obj`` crosses interpreters without pickle."""

def _run_deferred() -> None:
    """Run the buffer releases other interpreters deferred to this one."""

def _exports(id: int, /) -> int:
    """How many of interpreter ``id``'s objects other interpreters hold (-1: no such)."""

# ------------------------------------------------------------------- shm.c --

@final
class SharedBuffer:
    """Zero-filled, 64-byte aligned memory shared by every interpreter, without copying."""

    def __new__(cls, size: int) -> Self: ...
    @property
    def size(self) -> int:
        """Size of the memory in bytes."""
    @property
    def nbytes(self) -> int:
        """Size of the memory in bytes (as ``memoryview.nbytes``)."""
    @property
    def id(self) -> int:
        """Process-unique id of the memory: the same in every interpreter."""
    @property
    def released(self) -> bool:
        """Whether ``release()`` was called on this object."""
    def release(self) -> None:
        """Drop this object's reference to the memory (BufferError while views exist)."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
@type_check_only
class ForeignBuffer:
    """Memory owned by another interpreter, viewed in place.

    Not a module attribute: it is what ``memoryview.obj`` is for a memoryview
    received from another interpreter, and what serves pickle's out-of-band
    buffers.  Not created directly (its type disallows instantiation).
    """

    @property
    def nbytes(self) -> int:
        """Size of the viewed memory in bytes."""
    @property
    def readonly(self) -> bool:
        """Whether the sender's buffer is read-only."""
    def __buffer__(self, flags: int, /) -> memoryview: ...

# ------------------------------------------------------------ queue_type.c --

@final
class Queue:
    """A FIFO queue shared by every interpreter it is sent to."""

    def __new__(cls, maxsize: int = 0) -> Self: ...
    @property
    def id(self) -> int:
        """Process-unique id of the queue."""
    @property
    def maxsize(self) -> int:
        """Maximum size given at creation (<= 0: unbounded)."""
    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
    def put(self, obj: object, block: bool = True, timeout: float | None = None) -> None:
        """Add a copy of ``obj`` (QueueFull, QueueClosed, NotShareableError)."""
    def put_nowait(self, obj: object, /) -> None:
        """Like ``put(obj, block=False)``."""
    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove the first item and return it, rebuilt here (QueueEmpty, QueueClosed)."""
    def get_nowait(self) -> Any:
        """Like ``get(block=False)``."""
    def qsize(self) -> int: ...
    def empty(self) -> bool: ...
    def full(self) -> bool: ...
    def close(self) -> None:
        """Close the queue in every interpreter (closing twice is harmless)."""
    def __reduce__(self) -> tuple[Callable[[int, int], Queue], tuple[int, int]]:
        """Pickled, a queue is its id: it unpickles to the same queue in this process."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

def _queue_from_id(id: int, pid: int, /) -> Queue:
    """The Queue with this id, in process ``pid`` (this one): a pickled Queue, rebuilt."""

# ------------------------------------ lock.c, event.c, semaphore.c, condition.c --

@final
class Lock:
    """A lock shared by every interpreter it is sent to, like ``threading.Lock``."""

    @property
    def id(self) -> int:
        """Process-unique id of the shared object."""
    def acquire(self, blocking: bool = True, timeout: float | None = -1) -> bool:
        """Acquire; False if the timeout (-1 or None: forever) expired."""
    def release(self) -> None:
        """Release (RuntimeError if not held)."""
    def locked(self) -> bool:
        """Whether the lock is held, by anyone, in any interpreter."""
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class RLock:
    """A reentrant lock shared by every interpreter; the owner is the OS thread, in any interpreter."""

    @property
    def id(self) -> int:
        """Process-unique id of the shared object."""
    def acquire(self, blocking: bool = True, timeout: float | None = -1) -> bool:
        """Acquire (again, if the caller owns it); False if the timeout expired."""
    def release(self) -> None:
        """Release one level (RuntimeError if the caller is not the owner)."""
    def locked(self) -> bool:
        """Whether the lock is held, by anyone, in any interpreter."""
    def _is_owned(self) -> bool:
        """Whether the calling thread holds the lock."""
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Event:
    """A flag shared by every interpreter it is sent to, like ``threading.Event``."""

    @property
    def id(self) -> int:
        """Process-unique id of the shared object."""
    def set(self) -> None:
        """Set the flag and wake every waiter, in every interpreter."""
    def clear(self) -> None:
        """Reset the flag to false."""
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set (True) or the timeout expires (False)."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

class Semaphore:
    """A counting semaphore shared by every interpreter, like ``threading.Semaphore``."""

    def __new__(cls, value: int = 1) -> Self: ...
    @property
    def id(self) -> int:
        """Process-unique id of the shared object."""
    @property
    def _value(self) -> int:
        """Current counter (a snapshot)."""
    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Decrement the counter, waiting while it is zero; False on timeout."""
    def release(self, n: int = 1) -> None:
        """Increment the counter by ``n`` (ValueError if n < 1 or above a bound)."""
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class BoundedSemaphore(Semaphore):
    """A Semaphore that raises ValueError when released above its initial value."""

    def __new__(cls, value: int = 1) -> Self: ...

@final
class Condition:
    """A condition variable shared by every interpreter, like ``threading.Condition``."""

    def __new__(cls, lock: Lock | RLock | None = None) -> Self: ...
    @property
    def id(self) -> int:
        """Process-unique id of the shared object."""
    @property
    def lock(self) -> Lock | RLock:
        """The underlying Lock or RLock (a new RLock if none was given)."""
    def acquire(self, blocking: bool = True, timeout: float | None = -1) -> bool:
        """Acquire the underlying lock."""
    def release(self) -> None:
        """Release the underlying lock."""
    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait until notified (True) or the timeout (False), re-acquire."""
    def wait_for(self, predicate: Callable[[], _T], timeout: float | None = None) -> _T:
        """Wait until ``predicate()`` is true or the timeout expires; its last value."""
    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters, in any interpreter (the caller holds the lock)."""
    def notify_all(self) -> None:
        """Wake every waiter."""
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

# ---------------------------------------------------------------- worker.c --

@final
class Worker:
    """One executor worker: ``run()`` takes tasks from ``queue`` into interpreter ``interp_id``.

    ``on_start(task_id)`` runs in the main interpreter before a task (a false
    result skips it; None: always run), ``on_done(task_id, ok, value, stage)``
    after it: ``ok`` True and the result (``stage`` None); False and the
    excinfo of the error, ``stage`` saying where it failed (``'function'``,
    ``'arguments'``, ``'call'``, ``'result'``); None when ``value`` is the error
    met rebuilding the result here (``stage`` ``'result'``).
    """

    def __init__(
        self,
        interp_id: int,
        queue: Queue,
        on_start: Callable[[int], object] | None,
        on_done: Callable[[int, bool | None, Any, str | None], object],
        max_tasks: int = 0,
    ) -> None: ...
    def run(self) -> Literal["closed", "max_tasks", "fatal"]:
        """Run tasks until the queue is closed, max_tasks were done, or a task raised
        SystemExit/KeyboardInterrupt; the reason.  Blocks the calling thread."""
    def interrupt(self, task_id: int, /) -> bool:
        """Raise TaskCancelled in the worker if it runs ``task_id`` now; whether it did."""

def submit_task(
    queue: Queue,
    task_id: int,
    fn: Callable[..., object],
    args: tuple[Any, ...] | list[tuple[Any, ...]],
    kwargs: dict[str, Any] | None,
    chunked: bool,
    /,
) -> bool:
    """Encode a task and put it on a worker queue (QueueClosed if it is closed).

    A chunked task applies ``fn`` to each argument tuple of the list ``args``
    and returns ``(results, excinfo or None)``.  Returns whether some of the
    arguments were pickled (their rebuilding in the worker may fail).
    """

def completions() -> int:
    """How many tasks executor workers have finished in this process."""

def spin_for_completion(seen: int, seconds: float, /) -> int:
    """Spin (GIL released) until ``completions()`` is not ``seen`` or ``seconds`` passed; it."""
