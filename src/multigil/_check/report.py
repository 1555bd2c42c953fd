"""The verdicts for people (aligned tables) and for programs (JSON)."""

from __future__ import annotations

import platform
import shutil
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .result import STATUSES, Result

__all__ = ["table", "summary", "hints", "to_json", "exit_status", "Distribution",
           "by_distribution", "distribution_table"]

_HEADERS = ("MODULE", "STATUS", "REASON")
_MIN_REASON = 30
# Of a distribution whose modules differ and none works: the worst one.
_SEVERITY = ("crashes", "timeout", "refuses", "error", "missing")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 3)] + "..."


def _aligned(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int | None) -> str:
    """Columns padded to their widest cell; the last one (a reason) clipped to *width*.

    *width* defaults to the terminal's (no clipping when output is not a
    terminal, so that nothing is lost in a log or a pipe).
    """
    if width is None and sys.stdout.isatty():
        width = shutil.get_terminal_size().columns
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(len(headers) - 1)]
    used = sum(widths) + 2 * len(widths)
    lines = []
    for row in [headers, *rows]:
        last = _one_line(row[-1])
        if width is not None and row is not headers:
            last = _clip(last, max(_MIN_REASON, width - used))
        lines.append("  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)) + "  " + last)
    return "\n".join(lines)


def table(results: Sequence[Result], width: int | None = None) -> str:
    """An aligned table: module, status, and a one-line reason clipped to *width*."""
    return _aligned(_HEADERS, [(r.module, r.status, r.reason) for r in results], width)


@dataclass
class Distribution:
    """What an installed distribution's modules do in an isolated interpreter."""

    name: str
    version: str | None
    status: str
    modules: list[str] = field(default_factory=list)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _combined(statuses: Sequence[str]) -> str:
    if len(set(statuses)) == 1:
        return statuses[0]
    if {"ok", "partial"} & set(statuses):
        return "partial"
    return next(status for status in _SEVERITY if status in statuses)


def by_distribution(results: Sequence[Result],
                    versions: Mapping[str, str | None]) -> list[Distribution]:
    """One row per distribution providing the modules of *results*, sorted by name.

    A distribution with several top-level modules (setuptools has
    ``setuptools`` and ``pkg_resources``) gets their combined status:
    ``partial`` when some work and some do not. Modules that come from no
    known distribution are left out.
    """
    grouped: dict[str, list[Result]] = {}
    for result in results:
        for dist in result.distributions:
            grouped.setdefault(dist, []).append(result)
    rows = []
    for dist, members in sorted(grouped.items(), key=lambda item: item[0].lower()):
        reason = "; ".join(f"{r.module}: {r.reason}" if len(members) > 1 else r.reason
                           for r in members)
        rows.append(Distribution(dist, versions.get(dist), _combined([r.status for r in members]),
                                 [r.module for r in members], reason))
    return rows


def distribution_table(rows: Sequence[Distribution], width: int | None = None) -> str:
    """An aligned table: distribution, version, status, modules, reason."""
    return _aligned(("DISTRIBUTION", "VERSION", "STATUS", "MODULES", "REASON"),
                    [(row.name, row.version or "?", row.status, ", ".join(row.modules),
                      row.reason) for row in rows], width)


def counts(results: Sequence[Result] | Sequence[Distribution]) -> dict[str, int]:
    """How many results (or distributions) have each status, for every status."""
    found = Counter(result.status for result in results)
    return {status: found[status] for status in STATUSES}


def summary(results: Sequence[Result] | Sequence[Distribution], noun: str = "module") -> str:
    """One line: ``5 modules: 3 ok, 1 refuses, 1 missing``."""
    parts = [f"{n} {status}" for status, n in counts(results).items() if n]
    return f"{len(results)} {noun}{'' if len(results) == 1 else 's'}: {', '.join(parts)}"


def hints(results: Sequence[Result]) -> list[str]:
    """Short advice for the statuses present, one string each."""
    present = {result.status for result in results}
    lines = []
    if present & {"refuses", "partial"}:
        lines.append(
            "hint: refused modules cannot be imported in an isolated interpreter: run the "
            "work that needs them in a process (InterpreterPoolExecutor(fallback=\"process\") "
            "does that by itself) or in the main interpreter; keep the code that runs in "
            "interpreters free of them.")
    if "partial" in present:
        lines.append(
            "hint: a partial package imports, but the submodules named do not: code in "
            "interpreters can use the rest of it; `--json` lists every submodule.")
    if present & {"crashes", "timeout"}:
        lines.append(
            "hint: a module that crashes or times out took its checking process down, not "
            "this one; in your program it could do the same: use it outside interpreters.")
    if "missing" in present:
        lines.append("hint: missing modules are not importable by this Python "
                     f"({sys.executable}) at all.")
    return lines


def exit_status(results: Sequence[Result]) -> int:
    """0 if every module is ``ok``, else 1."""
    return 0 if all(result.ok for result in results) else 1


def to_json(results: Sequence[Result], warnings: Sequence[str] = (),
            distributions: Sequence[Distribution] = ()) -> dict[str, Any]:
    """Everything, machine-readable: the Python, each result (with its submodules'),
    the distributions (with ``--installed`` or ``--requirements``), the counts."""
    import multigil

    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "executable": sys.executable,
        "multigil": getattr(multigil, "__version__", None),
        "modules": [result.to_dict() for result in results],
        "distributions": [row.to_dict() for row in distributions],
        "summary": counts(results),
        "ok": exit_status(results) == 0,
        "warnings": list(warnings),
    }
