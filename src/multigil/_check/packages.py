"""The verdict on a package: its own import, and those of the submodules users import.

A package can import in an isolated interpreter while most of what it offers
cannot: ``import PIL`` works, ``import PIL.Image`` refuses. So a package that
imports is ``ok`` only if every submodule checked imports too; otherwise it is
``partial``, with the submodules that fail named, or, when none of them
imports (a namespace such as ``mpl_toolkits``), it takes their most common
status (``refuses``): importing the package alone is of no use. A submodule
that fails in the main interpreter as well (an optional dependency that is
not installed, such as ``PIL.ImageQt`` without Qt) is not the interpreters'
doing and is not counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .result import Result

__all__ = ["verdict", "names"]

# How the reason words each status of submodules (one, several), in this order.
_VERBS = {"refuses": ("refuses", "refuse"), "crashes": ("crashes", "crash"),
          "timeout": ("times out", "time out"), "error": ("fails", "fail"),
          "partial": ("works in part", "work in part")}


def names(modules: Sequence[str], shown: int = 3) -> str:
    """``a, b, c and 4 more``."""
    if len(modules) <= shown + 1:
        return ", ".join(modules[:-1]) + (" and " if len(modules) > 1 else "") + modules[-1]
    return f"{', '.join(modules[:shown])} and {len(modules) - shown} more"


def _failures(failing: Sequence[Result]) -> str:
    """``PIL.Image, PIL.ImageCms and 77 more refuse (C extension PIL._imaging); x crashes``.

    Shortest names first: they are usually the package's core (``PIL.Image``),
    which the longer ones (``PIL.BmpImagePlugin``) fail by importing.
    """
    groups = []
    failing = sorted(failing, key=lambda part: (len(part.module), part.module))
    for status, (one, several) in _VERBS.items():
        group = [part for part in failing if part.status == status]
        if not group:
            continue
        verb = one if len(group) == 1 else several
        text = f"{names([part.module for part in group])} {verb}"
        if status == "refuses":
            extensions = [ext for ext, _ in Counter(
                part.extension for part in group if part.extension).most_common()]
            if extensions:
                noun = "C extensions" if len(extensions) > 1 else "C extension"
                text += f" ({noun} {names(extensions, 2)})"
        groups.append(text)
    return "; ".join(groups)


def verdict(package: Result, parts: Sequence[Result]) -> Result:
    """*package*'s result, given its submodules' *parts* (changed in place, and returned).

    A package that does not import keeps its own verdict.
    """
    package.submodules = list(parts)
    if not package.ok or not parts:
        return package
    counted = [part for part in parts if not part.fails_in_main]
    failing = [part for part in counted if not part.ok]
    elsewhere = len(parts) - len(counted)
    cut = "" if package.found is None or package.found <= len(parts) else (
        f" (the first {len(parts)} of {package.found} found)")
    package.refused = sorted({ext for part in parts for ext in part.refused} | set(package.refused))
    not_counted = (f"; {elsewhere} more {'fails' if elsewhere == 1 else 'fail'} in the main "
                   "interpreter too (a missing optional dependency?), not counted"
                   ) if elsewhere else ""
    if not failing:
        if counted:
            noun = "submodule" if len(counted) == 1 else "submodules"
            verb = "imports" if len(counted) == 1 else "import"
            package.reason += f"; its {len(counted)} {noun}{cut} {verb} too"
        package.reason += not_counted
        return package
    refusing = [part.extension for part in failing if part.status == "refuses" and part.extension]
    package.extension = Counter(refusing).most_common(1)[0][0] if refusing else None
    if len(failing) < len(counted):
        package.status = "partial"
        which = (f"{len(failing)} of its {len(counted)} submodules{cut} "
                 f"{'does' if len(failing) == 1 else 'do'} not")
    else:
        package.status = Counter(part.status for part in failing).most_common(1)[0][0]
        which = ("its only submodule does not" if len(failing) == 1
                 else f"none of its {len(counted)} submodules{cut} do")
    package.reason = f"imports, but {which}: {_failures(failing)}{not_counted}"
    return package
