"""Start-up of every interpreter multigil creates.

It imports the C core there (which registers the interpreter's state) and
installs an import guard for C extensions:

* an extension module is imported in the main interpreter first.  On CPython
  3.12 and 3.13 the first import of a single-phase-init extension inside a
  sub-interpreter can abort the whole process; once the main interpreter has
  it, the sub-interpreter's import fails cleanly instead;
* an extension that refuses isolated interpreters fails with an ImportError
  that names the module, says why, and points at ``multigil check``.
"""

from __future__ import annotations

import sys
from importlib.machinery import ExtensionFileLoader

from multigil import _core

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from multigil._compat import KWTUPLE_BUG

# Standard-library modules imported in the main interpreter first: see
# multigil._compat (CPython 3.12.0-3.12.3 only).
_STDLIB = frozenset(sys.stdlib_module_names) if KWTUPLE_BUG else frozenset()
_done: set[str] = set()


def explain(name: str, error: BaseException) -> ImportError:
    """The ImportError multigil raises for an extension refusing interpreters."""
    why = str(error)
    if "subinterpreters" in why or "per-interpreter GIL" in why or "multiple interpreters" in why:
        reason = ("it is a C extension without support for isolated interpreters "
                  "(single-phase init, or no per-interpreter GIL support)")
    else:
        reason = f"its import failed here: {why}"
    err = ImportError(
        f"module {name!r} cannot be imported in an isolated interpreter: {reason}. "
        "Run code that needs it in the main interpreter or in a process pool; "
        "`multigil check` lists which of your modules work in interpreters.",
        name=name,
    )
    return err


class _GuardedLoader:
    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: Any) -> Any:
        try:
            return self._loader.create_module(spec)
        except ImportError as exc:
            raise explain(self._name, exc) from exc

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)

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
            if isinstance(spec.loader, ExtensionFileLoader):
                _core.import_in_main(name)
                # duck-typed: a Loader's create_module/exec_module, and the rest by delegation
                spec.loader = _GuardedLoader(spec.loader, name)  # type: ignore[assignment]
            return spec
        return None

    @classmethod
    def invalidate_caches(cls) -> None:
        pass


if ExtensionGuard not in sys.meta_path:
    sys.meta_path.insert(0, ExtensionGuard)
