"""Which modules to check: named ones, installed ones, or a requirements file's.

Distributions (what pip installs, e.g. ``PyYAML``) and modules (what Python
imports, e.g. ``yaml``) have different names; the installed distributions'
metadata maps one to the other (:func:`importlib.metadata.packages_distributions`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_SUBMODULES",
    "Target",
    "is_module_name",
    "installed_modules",
    "modules_of_distributions",
    "parse_requirements",
    "distributions_of",
    "versions",
]

#: How many submodules of each package named are checked too, by default.
DEFAULT_SUBMODULES = 200

# A requirement's name (PEP 508): letters, digits, and . _ - inside.
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
_EGG = re.compile(r"[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)")
# Never modules, though packages_distributions() lists them: byte-code caches.
_NOT_MODULES = frozenset({"__pycache__"})


@dataclass
class Target:
    """A module to check, and the distributions it comes from (when known)."""

    module: str
    distributions: list[str] = field(default_factory=list)


def is_module_name(text: str) -> bool:
    """Whether *text* is a dotted Python module name, such as ``xml.etree``."""
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _normalize(distribution: str) -> str:
    # PEP 503: PyYAML, pyyaml and py_yaml name the same distribution.
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _keep(module: str, include_private: bool) -> bool:
    return (is_module_name(module) and module not in _NOT_MODULES
            and (include_private or not module.startswith("_")))


def _top_level() -> Mapping[str, list[str]]:
    # importlib.metadata takes ~30 ms to import (email, zipfile, ...): only
    # when needed, so that ``multigil --help`` stays quick.
    from importlib import metadata

    return metadata.packages_distributions()


def installed_modules(include_private: bool = False) -> list[Target]:
    """Every top-level module of the installed distributions, sorted by name.

    Names starting with ``_`` (private helpers, such as ``_yaml``) are left
    out unless *include_private* is true.
    """
    return [Target(module, sorted(set(dists)))
            for module, dists in sorted(_top_level().items())
            if _keep(module, include_private)]


def distributions_of(modules: Iterable[str]) -> dict[str, list[str]]:
    """For each module, the installed distributions providing its top-level package."""
    table = _top_level()
    return {name: sorted(set(table.get(name.partition(".")[0], []))) for name in modules}


def versions(distributions: Iterable[str]) -> dict[str, str | None]:
    """The installed version of each distribution (None if it is not installed)."""
    from importlib import metadata

    found: dict[str, str | None] = {}
    for distribution in distributions:
        try:
            found[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            found[distribution] = None
    return found


def modules_of_distributions(
    distributions: Iterable[str], include_private: bool = False
) -> tuple[list[Target], list[str]]:
    """The top-level modules of these distributions.

    Returns
    -------
    targets : list of Target
        The modules of the distributions that are installed, and for the
        others a guess from the name (``my-package`` -> ``my_package``).
    unresolved : list of str
        The distributions that are not installed here (and were guessed).
    """
    by_distribution: dict[str, list[tuple[str, str]]] = {}
    for module, dists in _top_level().items():
        if _keep(module, include_private):
            for dist in dists:
                by_distribution.setdefault(_normalize(dist), []).append((module, dist))
    targets: dict[str, Target] = {}
    unresolved: list[str] = []
    for distribution in distributions:
        found = by_distribution.get(_normalize(distribution))
        if found:
            for module, dist in sorted(found):
                target = targets.setdefault(module, Target(module))
                if dist not in target.distributions:
                    target.distributions.append(dist)
            continue
        unresolved.append(distribution)
        guess = re.sub(r"[-.]+", "_", distribution).lower()
        if is_module_name(guess):
            targets.setdefault(guess, Target(guess, [distribution]))
    return list(targets.values()), unresolved


def parse_requirements(path: str | Path, _seen: frozenset[Path] = frozenset()) -> list[str]:
    """The distribution names a pip requirements file asks for, in order.

    Understands comments, blank lines, line continuations, extras, version
    specifiers, environment markers, ``name @ url``, ``...#egg=name`` and
    nested ``-r``/``--requirement`` files (relative to the file naming them).
    Other options (``-e`` paths without ``#egg=``, ``--index-url``,
    ``-c`` constraints, ...) name no distribution and are skipped.

    Raises
    ------
    OSError
        If a file cannot be read.
    """
    file = Path(path)
    resolved = file.resolve()
    if resolved in _seen:
        return []
    text = file.read_text(encoding="utf-8")
    names: list[str] = []
    for line in text.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if not line:
            continue
        if line.startswith("-"):
            option, _, value = line.partition(" ")
            option, eq, inline = option.partition("=")
            value = (inline if eq else value).strip()
            if option in ("-r", "--requirement") and value:
                names.extend(parse_requirements(file.parent / value, _seen | {resolved}))
            elif option in ("-e", "--editable"):
                egg = _EGG.search(value)
                if egg:
                    names.append(egg.group(1))
            continue
        egg = _EGG.search(line)
        if "://" in line.partition("@")[0] or line.startswith((".", "/")):
            if egg:  # a URL or a path: only #egg= names it
                names.append(egg.group(1))
            continue
        match = _REQUIREMENT_NAME.match(line)
        if match:
            names.append(match.group(1))
    return list(dict.fromkeys(names))
