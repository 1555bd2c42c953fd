"""The verdicts for people (an aligned table) and for programs (JSON)."""

from __future__ import annotations

import platform
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .result import STATUSES, Result

__all__ = ["table", "summary", "hints", "to_json", "exit_status"]

_HEADERS = ("MODULE", "STATUS", "REASON")
_MIN_REASON = 30


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 3)] + "..."


def table(results: Sequence[Result], width: int | None = None) -> str:
    """An aligned table: module, status, and a one-line reason clipped to *width*.

    *width* defaults to the terminal's (no clipping when output is not a
    terminal, so that nothing is lost in a log or a pipe).
    """
    if width is None and sys.stdout.isatty():
        width = shutil.get_terminal_size().columns
    module_width = max(len(_HEADERS[0]), *(len(r.module) for r in results))
    status_width = max(len(_HEADERS[1]), *(len(r.status) for r in results))
    lines = [f"{_HEADERS[0]:<{module_width}}  {_HEADERS[1]:<{status_width}}  {_HEADERS[2]}"]
    for result in results:
        reason = _one_line(result.reason)
        if width is not None:
            reason = _clip(reason, max(_MIN_REASON, width - module_width - status_width - 4))
        lines.append(f"{result.module:<{module_width}}  {result.status:<{status_width}}  {reason}")
    return "\n".join(lines)


def counts(results: Sequence[Result]) -> dict[str, int]:
    """How many results have each status, for every status."""
    found = Counter(result.status for result in results)
    return {status: found[status] for status in STATUSES}


def summary(results: Sequence[Result]) -> str:
    """One line: ``5 modules: 3 ok, 1 refuses, 1 missing``."""
    noun = "module" if len(results) == 1 else "modules"
    parts = [f"{n} {status}" for status, n in counts(results).items() if n]
    return f"{len(results)} {noun}: {', '.join(parts)}"


def hints(results: Sequence[Result]) -> list[str]:
    """Short advice for the statuses present, one string each."""
    present = {result.status for result in results}
    lines = []
    if "refuses" in present:
        lines.append(
            "hint: refused modules cannot be imported in an isolated interpreter: use them "
            "from the main interpreter, or run that work in a process pool "
            "(concurrent.futures.ProcessPoolExecutor); keep the code that runs in "
            "interpreters free of them.")
    if present & {"crashed", "timeout"}:
        lines.append(
            "hint: a crashed or timed-out module took its checking process down, not this "
            "one; in your program it could do the same: use it outside interpreters.")
    if "missing" in present:
        lines.append("hint: missing modules are not importable by this Python "
                     f"({sys.executable}) at all.")
    return lines


def exit_status(results: Sequence[Result]) -> int:
    """0 if every module is ``ok``, else 1."""
    return 0 if all(result.ok for result in results) else 1


def to_json(results: Sequence[Result], warnings: Sequence[str] = ()) -> dict[str, Any]:
    """Everything, machine-readable: the Python, each result, the counts."""
    import multigil

    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "executable": sys.executable,
        "multigil": getattr(multigil, "__version__", None),
        "modules": [result.to_dict() for result in results],
        "summary": counts(results),
        "ok": exit_status(results) == 0,
        "warnings": list(warnings),
    }
