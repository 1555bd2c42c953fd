"""Start-up of every interpreter multigil creates.

It imports the C core there (which registers the interpreter's state) and
installs an import guard for C extensions:

* an extension module is imported in the main interpreter first.  On CPython
  3.12 and 3.13 the first import of a single-phase-init extension inside a
  sub-interpreter can abort the whole process; once the main interpreter has
  it, the sub-interpreter's import fails cleanly instead;
* an extension that refuses isolated interpreters fails with
  :class:`multigil.InterpreterImportError`, which names the module, why, the
  user's module that imported it, and what to do (:func:`explain`). CPython's
  own message is its ``__cause__``;
* a top-level package whose import fails because one of its extensions refused
  (numpy wraps that error in a page of its own advice) fails with the same
  explanation in front, the package's error as its ``__cause__``.

The guard runs for every import in every interpreter, so the path taken by an
import that works is kept short: a finder loop and, for files, a thin loader
that takes itself out of the module before the module's code runs.
"""

from __future__ import annotations

import sys
from importlib.machinery import ExtensionFileLoader

from multigil import _core
from multigil._errors import InterpreterImportError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

from multigil._compat import KWTUPLE_BUG

# Standard-library modules imported in the main interpreter first: see
# multigil._compat (CPython 3.12.0-3.12.3 only).
_STDLIB = frozenset(sys.stdlib_module_names) if KWTUPLE_BUG else frozenset()
_done: set[str] = set()

#: Every extension refused in this interpreter: name -> CPython's message. Also
#: those a package caught and carried on without (PyYAML, msgpack): ``multigil
#: check`` reads this. One entry per extension, however often it is retried.
refusals: dict[str, str] = {}

# What the refusals say (lower case), from CPython 3.12-3.15 ("module X does
# not support loading in subinterpreters", "... per-interpreter GIL",
# "per-interpreter obmalloc does not support single-phase init extension
# modules"), Cython ("Interpreter change detected - this module can only be
# loaded into one interpreter per process") and PyO3 ("PyO3 modules do not yet
# support subinterpreters", "... may only be initialized once per interpreter
# process").
_REFUSAL_WORDS = ("subinterpreter", "per-interpreter", "multiple interpreters",
                  "one interpreter per process", "once per interpreter")


def is_refusal(message: str) -> bool:
    """Whether an ImportError's message says an extension refuses isolated interpreters."""
    lowered = message.lower()
    return any(word in lowered for word in _REFUSAL_WORDS)


def _importer(package: str) -> tuple[str, str] | None:
    """The first module on the stack outside the import machinery and *package*.

    Returns ``(module name, "file line N")``. Walked only when an extension
    refuses, never on an import that works.
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__")
        if not isinstance(module, str):
            module = ""
        top = module.partition(".")[0]
        if top != "importlib" and module != __name__ and top != package:
            return module or "?", f"{frame.f_code.co_filename} line {frame.f_lineno}"
        frame = frame.f_back
    return None


def _refused(subject: str, why: str, name: str, path: str | None,
             cause: str = "") -> InterpreterImportError:
    package = subject.partition(".")[0]
    found = _importer(package)
    importer = found[0] if found else None
    check = importer if importer and importer != "__main__" else package
    lines = [f"{subject} cannot be imported in an isolated interpreter: {why}."]
    if found:
        lines.append(f"  imported by: {found[0]} ({found[1]})")
    lines.append(f"  what to do: run the work that needs {package} in a process "
                 '(InterpreterPoolExecutor(fallback="process") does that by itself) or in '
                 f"the main interpreter; `multigil check {check}` tells which modules work "
                 "in interpreters.")
    if cause:
        lines.append(f"  {cause}")
    return InterpreterImportError("\n".join(lines), name=name, path=path, importer=importer)


def explain(name: str, error: BaseException, path: str | None = None) -> InterpreterImportError:
    """The error multigil raises for extension *name*, which refused with *error*.

    The caller raises it ``from error``. It is also recorded in :data:`refusals`.
    """
    refusals.setdefault(name, " ".join(str(error).split()))
    return _refused(name, "it is a C extension without support for isolated interpreters "
                    "(single-phase init, or no per-interpreter GIL support)", name, path)


def _innermost_refusal(error: BaseException) -> InterpreterImportError | None:
    """The guard's error for the extension that refused, if *error* stems from one."""
    found = None
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, InterpreterImportError):
            found = link
        link = link.__cause__ if link.__cause__ is not None else link.__context__
    return found


def _package_refused(package: str, error: ImportError) -> ImportError:
    """*error* of top-level *package*, with multigil's explanation in front if it stems
    from a refusal (numpy, for one, wraps the refusal in its own ImportError)."""
    if isinstance(error, InterpreterImportError):
        return error
    refused = _innermost_refusal(error)
    if refused is None or refused.name is None:
        return error
    if refused.name.partition(".")[0] == package:
        why = f"its C extension {refused.name} does not support isolated interpreters"
    else:
        why = f"it needs C extension {refused.name}, which does not support isolated interpreters"
    return _refused(package, why, refused.name, refused.path,
                    f"cause: {package}'s own error, which it raised for that.")


class _GuardedLoader:
    """A loader's stand-in while a module is created: see the module docstring."""

    def __init__(self, loader: Any, name: str, extension: bool) -> None:
        self._loader = loader
        self._name = name
        self._extension = extension

    def create_module(self, spec: Any) -> Any:
        if not self._extension:
            return self._loader.create_module(spec)
        try:
            return self._loader.create_module(spec)
        except ImportError as exc:
            if not is_refusal(str(exc)):
                raise
            raise explain(self._name, exc, getattr(spec, "origin", None)) from exc

    def exec_module(self, module: Any) -> None:
        # The module's own code sees its real loader, as without the guard.
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self._loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader
        if "." in self._name:
            self._loader.exec_module(module)
            return
        try:
            self._loader.exec_module(module)
        except ImportError as exc:
            error = _package_refused(self._name, exc)
            if error is exc:
                raise
            raise error from exc

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._loader, attr)


class ExtensionGuard:
    """sys.meta_path finder: see the module docstring."""

    @classmethod
    def find_spec(cls, name: str, path: Any = None, target: Any = None) -> Any:
        if name.partition(".")[0] in _STDLIB and name not in _done:
            _done.add(name)
            _core.import_in_main(name)
        for finder in sys.meta_path:
            if finder is cls or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is None:
                continue
            extension = isinstance(spec.loader, ExtensionFileLoader)
            if extension:
                _core.import_in_main(name)
            # Extensions (to explain a refusal) and top-level modules from
            # files (to explain a package that failed because of one).
            if extension or ("." not in name and spec.has_location and spec.loader is not None):
                # duck-typed: a Loader's create_module/exec_module, and the rest by delegation
                spec.loader = _GuardedLoader(spec.loader, name, extension)  # type: ignore[assignment]
            return spec
        return None

    @classmethod
    def invalidate_caches(cls) -> None:
        pass


if ExtensionGuard not in sys.meta_path:
    sys.meta_path.insert(0, ExtensionGuard)
