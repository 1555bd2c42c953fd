"""The Python modules of multigil are layered: a module uses only modules below it.

The test reads every module of ``src/multigil`` with :mod:`ast` (nothing is
imported), builds the graph of imports between them, and asserts that the
graph has no cycle.  Every import counts:

* ``import multigil.x``, ``from multigil.x import y``, ``from . import x``,
  ``from ..x import y``, and ``importlib.import_module("multigil.x")`` or
  ``importlib.import_module(".x", __name__)`` with a literal name;
* at module level, inside functions and classes, and under
  ``if TYPE_CHECKING:``.  An import made only for annotations is still a use:
  the reader and the type checker need the module below to understand this
  one, and a cycle hidden from the interpreter that way is a cycle all the
  same.

``from package import name`` is an edge to the submodule ``package.name``
where that is a module of multigil, else to the package's ``__init__``.
Importing a submodule does not count as a use of its parent package's
``__init__`` (Python runs it first, but the code does not use it).

Not seen: imports whose module name is computed at run time (``__main__``
looks its subcommand modules up in a table), and the C extension
``multigil._core``, whose stub ``_core.pyi`` stands for it here; the C code
imports ``multigil._errors``, ``multigil._pickler`` and ``multigil._remote``
at run time, which this graph does not show (the C core's layering is checked
on its own).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = "multigil"
LAYERS_DOC = ROOT / "docs" / "architecture.md"
LAYERS_SECTION = "## Python layers"


def module_files() -> dict[str, Path]:
    """Dotted module name -> source file (a ``.pyi`` stub where there is no ``.py``)."""
    files: dict[str, Path] = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py*")):
        if path.suffix not in (".py", ".pyi") or "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if path.suffix == ".pyi" and name in files:
            continue
        files[name] = path
    return files


def _resolve_relative(importer: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name of ``from <level dots><module> import ...`` in `importer`."""
    base = importer.split(".")
    if not is_package:
        base.pop()
    if level > 1:
        base = base[: len(base) - (level - 1)]
    if not base:
        raise ValueError(f"relative import beyond the top-level package in {importer}")
    return ".".join(base + ([module] if module else []))


def _literal_import_module(node: ast.Call, importer: str, is_package: bool) -> str | None:
    """The absolute name ``importlib.import_module("<literal>"[, package])`` imports.

    A relative name is resolved against ``__name__``, ``__package__`` or a
    literal package name; any other package argument is not understood (None).
    """
    func = node.func
    is_call = (isinstance(func, ast.Attribute) and func.attr == "import_module"
               and isinstance(func.value, ast.Name) and func.value.id == "importlib")
    is_call = is_call or (isinstance(func, ast.Name) and func.id == "import_module")
    if not is_call or not node.args:
        return None
    arg = node.args[0]
    if not isinstance(arg, ast.Constant) or not isinstance(arg.value, str):
        return None
    text: str = arg.value
    if not text.startswith("."):
        return text
    if len(node.args) < 2:
        return None
    package = node.args[1]
    if isinstance(package, ast.Name) and package.id == "__name__":
        base = importer
    elif isinstance(package, ast.Name) and package.id == "__package__":
        base = importer if is_package else importer.rpartition(".")[0]
    elif isinstance(package, ast.Constant) and isinstance(package.value, str):
        base = package.value
    else:
        return None
    level = len(text) - len(text.lstrip("."))
    return _resolve_relative(base, True, level, text.lstrip(".") or None)


def imports_of(name: str, path: Path, modules: set[str]) -> dict[str, int]:
    """The modules of the package that module `name` imports -> first line doing so."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.stem == "__init__"
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        # The deepest module of the package that `target` names.
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = (node.module or "") if node.level == 0 else _resolve_relative(
                name, is_package, node.level, node.module)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in modules else base, node.lineno)
        elif isinstance(node, ast.Call):
            target = _literal_import_module(node, name, is_package)
            if target is not None:
                add(target, node.lineno)
    return found


def import_graph() -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    files = module_files()
    modules = set(files)
    return {name: imports_of(name, path, modules) for name, path in files.items()}, files


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (a closed path) through each group of modules that import each other."""
    return [_cycle_in(graph, set(c)) for c in strongly_connected(graph)]


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The groups of more than one module that reach each other through imports."""
    # Tarjan's algorithm, iterative: strongly connected components.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def _cycle_in(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """A closed path through the component, from its first module back to it."""
    start = min(component)
    # Breadth-first search for the shortest way back to `start`.
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node]):
                if nxt not in component:
                    continue
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start] + path[::-1][1:] + [start]
                if nxt not in parents:
                    parents[nxt] = node
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover


def describe(group: list[str], graph: dict[str, dict[str, int]], files: dict[str, Path]) -> str:
    cycle = _cycle_in(graph, set(group))
    lines = [f"{', '.join(group)} import each other; one cycle:", "  " + " -> ".join(cycle)]
    for a, b in zip(cycle, cycle[1:]):
        where = files[a].relative_to(SRC)
        lines.append(f"    {a} imports {b} ({where}:{graph[a][b]})")
    return "\n".join(lines)


# ------------------------------------------------------------------ tests --

def test_every_module_is_read():
    files = module_files()
    assert {"multigil", "multigil._errors", "multigil.executor", "multigil._core",
            "multigil._executor._pool"} <= set(files)
    assert files["multigil._core"].suffix == ".pyi"


def test_the_import_graph_has_no_cycle():
    graph, files = import_graph()
    groups = strongly_connected(graph)
    assert not groups, "import cycles in src/multigil (a module may use only modules below it):\n" + \
        "\n".join(describe(g, graph, files) for g in groups)


def documented_layers() -> list[tuple[str, list[str]]]:
    """The numbered list of the "Python layers" section: (entry, its modules)."""
    text = LAYERS_DOC.read_text(encoding="utf-8")
    assert LAYERS_SECTION in text, f"{LAYERS_DOC} has no section {LAYERS_SECTION!r}"
    section = text.split(LAYERS_SECTION, 1)[1].split("\n## ", 1)[0]
    modules = set(module_files())
    layers = []
    for entry in re.findall(r"^\s*\d+\.\s+`([^`]+)`", section, flags=re.MULTILINE):
        if entry == PACKAGE:
            members = [PACKAGE]
        elif entry.endswith(".*"):
            prefix = f"{PACKAGE}.{entry[:-2]}"
            members = sorted(m for m in modules if m == prefix or m.startswith(prefix + "."))
        else:
            members = [f"{PACKAGE}.{entry}"]
        layers.append((entry, members))
    return layers


def test_the_documented_layers_match_the_code():
    graph, _ = import_graph()
    layers = documented_layers()
    listed = [m for _, members in layers for m in members]
    assert sorted(listed) == sorted(set(listed)), "a module is listed twice"
    assert set(listed) == set(graph), (
        f"{LAYERS_DOC.name} {LAYERS_SECTION!r} misses {sorted(set(graph) - set(listed))}, "
        f"lists unknown {sorted(set(listed) - set(graph))}")
    below: set[str] = set()
    for entry, members in layers:
        for module in members:
            above = set(graph[module]) - below - set(members)
            assert not above, (f"{module} (entry {entry!r} of {LAYERS_SECTION!r}) imports "
                               f"{sorted(above)}, listed after it")
        below |= set(members)


# The checker itself, on small graphs and sources.

def test_find_cycles_reports_each_cycle_once():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1, "d": 1}, "d": {}, "e": {"f": 1},
             "f": {"e": 1}}
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["e", "f", "e"]]
    assert find_cycles({"a": {"b": 1}, "b": {}}) == []


@pytest.mark.parametrize("source, expected", [
    ("import pkg.low", {"pkg.low"}),
    ("from pkg import low", {"pkg.low"}),
    ("from pkg import VERSION", {"pkg"}),
    ("from .low import thing", {"pkg.low"}),
    ("from . import low, sub", {"pkg.low", "pkg.sub"}),
    ("from .sub.deep import f", {"pkg.sub.deep"}),
    ("def f():\n    from .low import g", {"pkg.low"}),
    ("TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from .low import T", {"pkg.low"}),
    ("import importlib\nimportlib.import_module('.low', __package__)", {"pkg.low"}),
    ("import importlib\nimportlib.import_module('..low', 'pkg.sub')", {"pkg.low"}),
    ("import importlib\nimportlib.import_module('pkg.sub')", {"pkg.sub"}),
    ("import os, json\nfrom collections import deque", set()),
])
def test_imports_of_sees_every_kind_of_import(tmp_path, source, expected):
    path = tmp_path / "mod.py"
    path.write_text(source)
    modules = {"pkg", "pkg.low", "pkg.mod", "pkg.sub", "pkg.sub.deep"}
    assert set(imports_of("pkg.mod", path, modules)) == expected


def test_relative_imports_in_a_subpackage(tmp_path):
    path = tmp_path / "__init__.py"
    path.write_text("from .. import low\nimport importlib\nimportlib.import_module('.deep', __name__)\n")
    modules = {"pkg", "pkg.low", "pkg.sub", "pkg.sub.deep"}
    assert set(imports_of("pkg.sub", path, modules)) == {"pkg.sub.deep", "pkg.low"}
