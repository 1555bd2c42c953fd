"""``multigil check --markdown``: the verdicts as a page to publish or to attach to an issue.

The page says when, on which Python and with which versions it was made, gives
the table (per distribution with ``--installed`` or ``--requirements``, else
per module), names the submodules of every partial package, and ends with what
a library's authors can change so that it loads in isolated interpreters.
"""

from __future__ import annotations

import datetime
import platform
import sys
from collections.abc import Sequence

from . import packages
from .report import Distribution, summary
from .result import STATUSES, Result

__all__ = ["page"]

_MEANING = {
    "ok": "imports in an isolated interpreter; for a package, so does every submodule checked",
    "partial": "the package imports, but some of its submodules do not (listed below)",
    "refuses": "a C extension it needs does not support isolated interpreters",
    "missing": "not importable here at all",
    "error": "its import raises another exception",
    "crashes": "its import kills the process",
    "timeout": "its import did not finish in time",
}

AUTHORS = """\
## For library authors: loading in isolated interpreters

An interpreter with its own GIL (PEP 684) loads only extension modules that
declare they support it. What that takes:

1. **Multi-phase initialization** (PEP 489): `PyInit_<name>` returns
   `PyModuleDef_Init(&def)`, and the module is set up in a `Py_mod_exec` slot,
   so that each interpreter gets a module object of its own. Single-phase
   modules (`PyModule_Create` in `PyInit_<name>`) are refused.
2. **Module state instead of globals**: no `static PyObject *`, no static
   types. Keep objects in the module's state (`m_size`, `PyModule_GetState`),
   make types with `PyType_FromModuleAndSpec` and find the state from a method
   with `PyType_GetModuleByDef`. C-level state shared by the whole process (a
   cache, a C library's global) needs its own lock, since interpreters now run
   at the same time; and no object may travel from one interpreter to another.
   CPython's HOWTO *Isolating Extension Modules* walks through it.
3. **Say so**: add the slot
   `{Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED}`
   (CPython 3.12+). Without it, a multi-phase module counts as supporting only
   interpreters that share the main GIL.

With a binding generator:

- **Cython 3.1 or later**: the directive
  `# cython: subinterpreters_compatible=own_gil` (values `no`, the default,
  `shared_gil`, `own_gil`) sets that slot. It is a promise, not a conversion:
  module-level `cdef` variables (Python objects above all) and acquiring the
  GIL (`with gil` where it was not held; re-acquiring it after `with nogil` is
  fine) are known not to work, and Cython warns about them at compile time.
- **pybind11 3.0 or later**: `PYBIND11_MODULE(name, m,
  py::multiple_interpreters::per_interpreter_gil())`; pybind11 3 uses
  multi-phase init itself.
- **PyO3**: `#[pymodule]` modules refuse sub-interpreters ("PyO3 modules do
  not yet support subinterpreters"); support is tracked in PyO3's issue #3451.
  Until it lands there is nothing to switch on.

To check a build: `multigil check yourpackage` imports it, and each of its
submodules, in a fresh isolated interpreter.
"""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    return lines


def _partial(result: Result) -> list[str]:
    """The submodules of a partial package that do not import, by status."""
    lines = [f"### {result.module}", ""]
    failing = [part for part in result.submodules if not part.ok and not part.fails_in_main]
    for status in STATUSES:
        group = [part for part in failing if part.status == status]
        if not group:
            continue
        extensions = sorted({part.extension for part in group if part.extension})
        noun = "C extensions" if len(extensions) > 1 else "C extension"
        by = f" ({noun} {packages.names(extensions, 3)})" if extensions else ""
        shown = ", ".join(f"`{part.module}`" for part in group[:60])
        more = f" and {len(group) - 60} more" if len(group) > 60 else ""
        lines.append(f"- {status}{by}: {shown}{more}")
    working = [f"`{part.module}`" for part in result.submodules if part.ok]
    if working:
        lines.append(f"- ok: {', '.join(working[:60])}"
                     + (f" and {len(working) - 60} more" if len(working) > 60 else ""))
    lines.append("")
    return lines


def page(results: Sequence[Result], distributions: Sequence[Distribution] = (),
         warnings: Sequence[str] = (), today: datetime.date | None = None) -> str:
    """The whole page, ending with a newline."""
    import multigil

    day = (today or datetime.date.today()).isoformat()
    python = f"{platform.python_implementation()} {platform.python_version()}"
    lines = [
        "# What works in isolated interpreters today",
        "",
        f"Generated by `multigil check` on {day}: {python} on {sys.platform} "
        f"({platform.machine()}), multigil {multigil.__version__}. Every module was "
        "imported in a fresh interpreter with its own GIL, as multigil's interpreters "
        "and pools run code; for a package, so was each submodule users import.",
        "",
    ]
    if distributions:
        lines += [summary(distributions, "distribution") + ".", ""]
        lines += _table(("distribution", "version", "status", "modules", "what happens"),
                        [(row.name, row.version or "?", f"**{row.status}**",
                          ", ".join(f"`{m}`" for m in row.modules), row.reason)
                         for row in distributions])
    else:
        lines += [summary(results) + ".", ""]
        lines += _table(("module", "status", "what happens"),
                        [(f"`{r.module}`", f"**{r.status}**", r.reason) for r in results])
    present = {result.status for result in results} | {row.status for row in distributions}
    lines += ["", "Statuses: " + "; ".join(f"**{status}**: {_MEANING[status]}"
                                           for status in STATUSES if status in present) + ".",
              ""]
    partial = [result for result in results if result.status == "partial"]
    if partial:
        lines += ["## Packages that work in part", ""]
        for result in partial:
            lines += _partial(result)
    if warnings:
        lines += ["## Warnings", ""] + [f"- {_cell(warning)}" for warning in warnings] + [""]
    lines.append(AUTHORS)
    return "\n".join(lines)
