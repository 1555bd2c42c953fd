"""How objects and callables cross interpreters by pickle.

:func:`dumps` is the pickler of every value that does not cross natively
(the C core calls it): cloudpickle, so that lambdas, closures and classes of
``__main__`` travel by value, with one change that makes script code behave
as in a process pool:

* **a function of ``__main__`` is rebuilt in the receiver's ``__main__``**:
  its globals are that interpreter's ``__main__`` namespace, so it sees what
  the initializer, ``shared=`` or an earlier task bound there.  The globals it
  uses travel with it, and are bound there only where the name is not bound
  yet: the worker's own value wins, as in a worker process.  Its code crosses
  through :mod:`marshal`, file name and line numbers included, so that
  tracebacks show the script's lines.  In the main interpreter (a function
  that a worker sends back) it gets a namespace of its own: the script's
  globals are never changed.

:func:`function_ref` says how a callable crosses, for the C core's call path
(``call.c``), which keeps the answer by token in every receiver:

* by name (functions, builtins and classes importable by name, methods of
  those, ``str.upper``): a tiny pickle, kept by the sender for this very
  object;
* by content (functions of ``__main__``, lambdas, closures; class methods;
  ``functools.partial`` of those with plain arguments): pickled once per
  content, then only the token and the same payload (in a
  :class:`~multigil.SharedBuffer`, not copied, when it is big) cross, and
  each receiver rebuilds it once.  The content of a ``__main__`` function is
  its code, defaults and closure, not its globals' values (the receiver's
  ``__main__`` holds those); that of any other by-value function includes the
  globals it uses, which it carries with it;
* anything else by value, every time.

Imported in every interpreter that multigil uses, on first need: standard
library and the C core only (cloudpickle, marshal and dis lazily).
"""

from __future__ import annotations

import sys

import _pickle

from . import _core

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["dumps", "function_ref", "function_crosses", "forget"]

# The types of module `types`, which is not imported in every interpreter.
ModuleType = type(sys)


class _Probe:
    def method(self) -> None:
        pass


FunctionType: Any = type(_Probe.method)
MethodType: Any = type(_Probe().method)
CodeType: Any = type(_Probe.method.__code__)
CellType: Any = type((lambda x: lambda: x)(0).__closure__[0])  # type: ignore[index]

#: By-content payloads at least this big cross in a SharedBuffer, referenced by
#: every task instead of being copied into it.
SHARED_PAYLOAD = 64 * 1024
#: The sender keeps at most this many by-content callables, and this many bytes
#: of their payloads (past either, it forgets them all and starts again).
CACHE_ENTRIES = 1024
CACHE_BYTES = 64 * 1024 * 1024
#: A partial whose pickled arguments are bigger is not kept by content (its
#: key would cost a second pickling of them on every submit).
PARTIAL_KEY_BYTES = 64 * 1024


# ------------------------------------------------------------- the pickler --

def dumps(obj: Any, protocol: int = 5, buffer_callback: Any = None) -> bytes:
    """``pickle.dumps`` for values that cross interpreters: see the module docstring."""
    pickler = _pickler_class()
    if pickler is None:  # pragma: no cover - cloudpickle is a dependency
        return _pickle.dumps(obj, protocol, buffer_callback=buffer_callback)
    import io

    buf = io.BytesIO()
    pickler(buf, protocol, buffer_callback=buffer_callback).dump(obj)
    return buf.getvalue()


_Pickler: Any = None


def _pickler_class() -> Any:
    global _Pickler
    if _Pickler is None:
        try:
            import cloudpickle
        except ImportError:  # pragma: no cover - cloudpickle is a dependency
            return None

        class Pickler(cloudpickle.Pickler):  # type: ignore[misc]  # untyped
            def reducer_override(self, obj: Any) -> Any:
                if type(obj) is FunctionType and obj.__module__ == "__main__":
                    return _reduce_main_function(obj)
                return super().reducer_override(obj)

        _Pickler = Pickler
    return _Pickler


class _Empty:
    """Stands for the contents of an empty closure cell (pickled by name)."""


def _reduce_main_function(func: Any) -> tuple[Any, ...]:
    """A function of __main__, to be rebuilt in the receiver's __main__.

    Made and filled in two steps, as pickle does for objects with state, so
    that a function reachable from its own globals or closure (recursion)
    is the same object there.
    """
    import marshal

    code = func.__code__
    g = func.__globals__
    captured = {name: g[name] for name in global_names(code) if name in g}
    closure = func.__closure__
    cells = None if closure is None else tuple(_contents(c) for c in closure)
    state = (captured, func.__defaults__, func.__kwdefaults__, cells, func.__dict__ or None,
             func.__qualname__, func.__doc__, _submodules(code, captured.values()))
    return (_main_function, (marshal.dumps(code), func.__name__,
                             None if closure is None else len(closure)),
            state, None, None, _set_main_function_state)


def _contents(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # empty
        return _Empty


def _main_function(code: bytes, name: str, cells: int | None) -> Any:
    import marshal

    closure = None if cells is None else tuple(CellType() for _ in range(cells))
    return FunctionType(marshal.loads(code), _main_namespace(), name, None, closure)


def _main_namespace() -> dict[str, Any]:
    """Where a function of __main__ is rebuilt: this interpreter's __main__;
    in the main interpreter, whose __main__ is the user's script, a namespace
    of its own."""
    if _core.get_current() != _core.get_main():
        ns: dict[str, Any] = sys.modules["__main__"].__dict__
        return ns
    import builtins

    return {"__name__": "__main__", "__builtins__": builtins}


def _set_main_function_state(func: Any, state: tuple[Any, ...]) -> None:
    captured, defaults, kwdefaults, cells, attrs, qualname, doc, _ = state
    ns = func.__globals__
    for name, value in captured.items():
        ns.setdefault(name, value)  # the receiver's own value wins
    if cells is not None:
        for cell, value in zip(func.__closure__, cells):
            if value is not _Empty:
                cell.cell_contents = value
    func.__defaults__ = defaults
    func.__kwdefaults__ = kwdefaults
    if attrs:
        func.__dict__.update(attrs)
    func.__qualname__ = qualname
    func.__doc__ = doc
    func.__module__ = "__main__"


_names: dict[int, tuple[Any, tuple[str, ...]]] = {}


def global_names(code: Any) -> tuple[str, ...]:
    """The global names the code (and the functions and classes defined in
    it) reads, writes or deletes, in order of first use."""
    hit = _names.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1]
    import dis

    ops = {"LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_NAME"}
    found: dict[str, None] = {}
    todo = [code]
    while todo:
        co = todo.pop()
        for ins in dis.get_instructions(co):
            if ins.opname in ops:
                found[ins.argval] = None
        todo.extend(c for c in co.co_consts if isinstance(c, CodeType))
    names = tuple(found)
    if len(_names) >= CACHE_ENTRIES:
        _names.clear()
    _names[id(code)] = (code, names)  # the code object stays alive: its id stays its own
    return names


def _submodules(code: Any, values: Any) -> list[Any]:
    """Submodules of the packages among `values` that `code` reaches as
    attributes (``xml.etree.ElementTree.parse``): pickled with the function,
    so that unpickling it imports them (as cloudpickle does)."""
    found = []
    names = set(code.co_names)
    for value in values:
        if isinstance(value, ModuleType) and getattr(value, "__package__", None):
            prefix = value.__name__ + "."
            for name in list(sys.modules):
                if name.startswith(prefix) and set(name[len(prefix):].split(".")) <= names:
                    found.append(sys.modules[name])
    return found


# --------------------------------------------------------- callables ------

def importable_by_name(fn: Any) -> bool:
    """True if unpickling by name in another interpreter finds this very object."""
    module = getattr(fn, "__module__", None)
    if module is None:  # method descriptors (str.upper): their class's module
        module = getattr(getattr(fn, "__objclass__", None), "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return False
    if module == "__main__" or "<" in qualname:  # __main__, <lambda>, <locals>
        return False
    mod = sys.modules.get(module)
    if mod is None or (module != "builtins" and getattr(mod, "__spec__", None) is None):
        return False
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return False
    return obj is fn


# key -> (token, payload, what keeps the key's objects alive)
_by_content: dict[Any, tuple[int, Any, Any]] = {}
_cached_bytes = 0


def function_ref(fn: Any, token: int) -> tuple[Any, int, Any]:
    """How ``fn`` crosses: ``(by_object, token, payload)``.

    `payload` is a pickle (bytes, or a SharedBuffer holding one), or the pair
    ``(shared object, method name)``; receivers keep what they rebuilt by the
    token (0: not kept).  `by_object`: True if the caller may keep this
    answer for this very object; for a function of ``__main__`` without
    closure or attributes, the guard ``(code, defaults, kwdefaults)``: the
    caller may keep the answer while the function still has those (its
    content, ``call.c``); False otherwise.  `token` is a fresh process-unique
    id, used if `fn` is new here (0: keep nothing).  Raises NotShareableError
    if `fn` cannot be pickled.
    """
    if type(fn) is FunctionType and (fn.__module__ == "__main__" or "<" in fn.__qualname__):
        # The common case first: a function of the script, a lambda, a closure.
        found = _function_key(fn)
        hit = None if found is None else _by_content.get(found[0])
        if hit is not None:
            return _guard(fn), hit[0], hit[1]
    if not callable(fn):
        raise TypeError(f"{type(fn).__name__!r} object is not callable")
    # A method of a natively shared object (``queue.put``) crosses as the
    # object and the method's name: the object itself is not picklable.
    owner = getattr(fn, "__self__", None)
    name = getattr(fn, "__name__", None)
    if (owner is not None and not isinstance(owner, (ModuleType, type)) and isinstance(name, str)
            and _core.is_shareable(owner) and getattr(owner, name, None) == fn):
        return False, 0, (owner, name)
    try:
        if type(fn) is not MethodType and importable_by_name(fn):
            return True, token, _pickle.dumps(fn, 5)
        found = _content_key(fn)
        if found is None:
            return False, 0, dumps(fn)
        key, keep, by_name = found
        hit = _by_content.get(key)
        if hit is not None:
            return _guard(fn, by_name), hit[0], hit[1]
        payload: Any = _pickle.dumps(fn, 5) if by_name else dumps(fn)
        kept = _remember(key, keep, token, payload)
        if key not in _by_content:
            return False, 0, kept  # not kept: the receivers need not keep it either
        return _guard(fn, by_name), token, kept
    except Exception as exc:
        from ._errors import NotShareableError

        raise NotShareableError(
            f"cannot send the callable {fn!r} (of type {type(fn).__qualname__!r}) to "
            f"another interpreter: {exc}. Use a module-level function or a picklable "
            "callable."
        ) from exc


def _guard(fn: Any, by_name: bool = False) -> Any:
    """Whether the caller may keep the answer for this very object (the
    `by_object` of function_ref): True for a method of a class by name (a
    bound method never changes); for a function of __main__ whose content is
    its code and defaults only, or a partial by name of values that never
    change, what tells that it still has them (``call.c`` checks it); else
    False."""
    tp = type(fn)
    if tp is MethodType:
        return by_name
    if (tp is FunctionType and fn.__module__ == "__main__" and fn.__closure__ is None
            and not fn.__dict__ and not fn.__kwdefaults__):
        return (fn.__code__, fn.__defaults__, fn.__kwdefaults__)
    functools = sys.modules.get("functools")
    if (by_name and functools is not None and tp is functools.partial
            and _constant((fn.args, *fn.keywords.values()))):
        return (fn.func, fn.args, fn.keywords, tuple(fn.keywords.values()))
    return False


def _constant(value: Any) -> bool:
    """Whether `value` is made of values that cannot change (numbers, strings,
    bytes, None, and tuples and frozensets of those)."""
    tp = type(value)
    if tp in (int, float, complex, str, bytes, bool, type(None)):
        return True
    if tp is tuple or tp is frozenset:
        return all(_constant(v) for v in value)
    return False


def _stable(value: Any) -> bool:
    """Whether a function holding `value` (a default, a closure cell, an
    attribute, a global it carries) pickles the same for as long as it holds
    this very object: constants, modules, and classes and functions importable
    by name.  A list, a dict, an instance or a class of ``__main__`` can change
    in place: a function holding one is sent by value every time."""
    if value is _MISSING or value is _Empty or _constant(value):
        return True
    if isinstance(value, ModuleType):
        return True
    return callable(value) and importable_by_name(value)


def forget() -> None:
    """Drop what this interpreter keeps of the callables it sent or received
    (a worker's interpreter being reset, multigil._recycle)."""
    global _cached_bytes, _Pickler
    _by_content.clear()
    _cached_bytes = 0
    _names.clear()
    _Pickler = None     # cloudpickle itself may be imported again


def function_crosses(fn: Any) -> bool:
    """Whether ``fn`` can be sent to another interpreter."""
    try:
        function_ref(fn, 0)
    except Exception:
        return False
    return True


def _remember(key: Any, keep: Any, token: int, payload: bytes) -> Any:
    """Keep a by-content payload (in a SharedBuffer if it is big); the payload."""
    global _cached_bytes
    size = len(payload)
    if size > CACHE_BYTES or not token:
        return payload  # too big to keep (or no token): sent by value each time
    if len(_by_content) >= CACHE_ENTRIES or _cached_bytes + size > CACHE_BYTES:
        _by_content.clear()
        _cached_bytes = 0
        # The C core's cache by object holds these payloads too: it forgets
        # them with us, so that both stay within CACHE_BYTES.
        _core._forget_functions()
    kept: Any = payload
    if size >= SHARED_PAYLOAD:
        kept = _core.SharedBuffer(size)
        with memoryview(kept) as view:
            view[:] = payload
    _by_content[key] = (token, kept, keep)
    _cached_bytes += size
    return kept


_MISSING = object()


def _content_key(fn: Any) -> tuple[Any, Any, bool] | None:
    """``(key, objects, by_name)`` for a callable that can be kept by content,
    or None.  The key is made of the ids of `objects` (kept alive with it);
    `by_name`: plain pickle pickles it by name."""
    tp = type(fn)
    if tp is FunctionType:
        return _function_key(fn)
    if tp is MethodType:
        owner, func = fn.__self__, fn.__func__
        if not isinstance(owner, (type, ModuleType)):
            return None  # an instance's method: its state may change
        by_name = importable_by_name(owner) and getattr(owner, fn.__name__, None) == fn
        parts = (func, owner)
        return ("method", *map(id, parts)), parts, by_name
    functools = sys.modules.get("functools")
    if functools is not None and tp is functools.partial and not fn.__dict__:
        if not _constant((fn.args, *fn.keywords.values())):
            return None  # arguments that may change: by value, every time
        args = _pickle.dumps((fn.args, fn.keywords), 5)
        if len(args) > PARTIAL_KEY_BYTES:
            return None  # keyed by value, a big argument would be pickled twice
        if importable_by_name(fn.func):
            inner: Any = ("name", id(fn.func))
            keep: Any = fn.func
            by_name = True
        else:
            found = _content_key(fn.func)
            if found is None:
                return None
            inner, keep, _ = found
            by_name = False
        return ("partial", inner, args), (fn, keep), by_name
    return None


def _function_key(fn: Any) -> tuple[Any, Any, bool] | None:
    """As _content_key, for a function; None if something it holds may change
    in place (see _stable).  The globals of a function of ``__main__`` are not
    part of its content: they are sent once (docs/executor.md)."""
    defaults, kwdefaults = fn.__defaults__, fn.__kwdefaults__
    parts: tuple[Any, ...] = (fn.__code__, defaults, kwdefaults, *(defaults or ()),
                              *(kwdefaults or {}).values())
    closure = fn.__closure__
    if closure is not None:
        parts += tuple(map(_contents, closure))
    attrs = fn.__dict__
    if attrs:
        parts += tuple(attrs.values())
    if fn.__module__ != "__main__":
        # It carries the globals it uses (cloudpickle): their values count.
        g = fn.__globals__
        parts += (g, *[g.get(name, _MISSING) for name in global_names(fn.__code__)])
    if not all(map(_stable, parts[3:])):
        return None
    names = (tuple(kwdefaults or ()), tuple(attrs))
    return (tuple(map(id, parts)), names), parts, False
