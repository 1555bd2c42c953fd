"""The type stub ``multigil/_core.pyi`` against the built extension ``multigil._core``.

The stub is parsed with :mod:`ast` (nothing imports it), and compared with the
module as built: the same names, of the same kinds (function, class,
constant), the same members per class (methods, properties, buffer and
context-manager dunders), ``@final`` exactly where the type cannot be
subclassed, the same bases, and, wherever the C code gives a function a text
signature, the same parameter names and defaults.  If mypy is installed,
``mypy.stubtest`` checks the stub too (tests/stubtest_allowlist.txt).
"""

from __future__ import annotations

import ast
import inspect
import os
import shutil
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import multigil
from multigil import _core

pytestmark = pytest.mark.timeout(60)

PKG = Path(multigil.__file__).resolve().parent
STUB = PKG / "_core.pyi"
REPO_STUB = Path(__file__).resolve().parents[1] / "src" / "multigil" / "_core.pyi"
ALLOWLIST = Path(__file__).resolve().parent / "stubtest_allowlist.txt"

# Py_TPFLAGS_BASETYPE: the type can be subclassed.
_TPFLAGS_BASETYPE = 1 << 10

# Dunders that the C code defines through type slots, and that a stub must
# declare for type checkers to know the protocol (buffer, len, with, ...).
PROTOCOL_DUNDERS = frozenset({
    "__buffer__", "__release_buffer__", "__len__", "__enter__", "__exit__",
    "__iter__", "__next__", "__getitem__", "__setitem__", "__delitem__",
    "__contains__", "__call__", "__bool__", "__index__", "__int__", "__float__",
})


# ---------------------------------------------------------------- the stub --

@dataclass
class StubFunction:
    name: str
    node: ast.FunctionDef


@dataclass
class StubClass:
    name: str
    bases: list[str]
    final: bool
    type_check_only: bool
    methods: dict[str, StubFunction] = field(default_factory=dict)
    properties: set[str] = field(default_factory=set)
    attributes: set[str] = field(default_factory=set)

    @property
    def members(self) -> set[str]:
        return set(self.methods) | self.properties | self.attributes


@dataclass
class Stub:
    functions: dict[str, StubFunction] = field(default_factory=dict)
    classes: dict[str, StubClass] = field(default_factory=dict)
    constants: dict[str, ast.AnnAssign] = field(default_factory=dict)
    # Names that exist only for type checkers: type aliases and TypeVars.
    typing_only: set[str] = field(default_factory=set)

    @property
    def runtime_names(self) -> set[str]:
        """The names the built module must have."""
        classes = {n for n, c in self.classes.items() if not c.type_check_only}
        return set(self.functions) | classes | set(self.constants)


def _decorator_names(node: ast.FunctionDef | ast.ClassDef) -> set[str]:
    names = set()
    for d in node.decorator_list:
        if isinstance(d, ast.Name):
            names.add(d.id)
        elif isinstance(d, ast.Attribute):
            names.add(d.attr)
    return names


def _is_docstring_or_ellipsis(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)


def _is_typing_only(node: ast.stmt) -> bool:
    """``X: TypeAlias = ...``, ``type X = ...`` or ``T = TypeVar(...)``."""
    if isinstance(node, ast.TypeAlias):
        return True
    if isinstance(node, ast.AnnAssign):
        ann = node.annotation
        return (isinstance(ann, ast.Name) and ann.id == "TypeAlias") or (
            isinstance(ann, ast.Attribute) and ann.attr == "TypeAlias")
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
        func = node.value.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        return name in ("TypeVar", "ParamSpec", "TypeVarTuple")
    return False


def _target_name(node: ast.stmt) -> str:
    if isinstance(node, ast.TypeAlias):
        return node.name.id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    raise AssertionError(f"stub line {node.lineno}: unsupported assignment target")


def _parse_class(node: ast.ClassDef) -> StubClass:
    decorators = _decorator_names(node)
    cls = StubClass(
        name=node.name,
        bases=[ast.unparse(b) for b in node.bases],
        final="final" in decorators,
        type_check_only="type_check_only" in decorators,
    )
    for item in node.body:
        if _is_docstring_or_ellipsis(item):
            continue
        if isinstance(item, ast.FunctionDef):
            if "property" in _decorator_names(item):
                cls.properties.add(item.name)
            else:
                assert item.name not in cls.methods, f"{node.name}.{item.name}: overloads are not handled here"
                cls.methods[item.name] = StubFunction(item.name, item)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            cls.attributes.add(item.target.id)
        else:
            raise AssertionError(f"stub line {item.lineno}: unsupported class body statement "
                                 f"{ast.unparse(item)!r}; teach tests/test_stub.py about it")
    return cls


def parse_stub(source: str) -> Stub:
    stub = Stub()
    for node in ast.parse(source).body:
        if _is_docstring_or_ellipsis(node) or isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.FunctionDef):
            assert node.name not in stub.functions, f"{node.name}: overloads are not handled here"
            stub.functions[node.name] = StubFunction(node.name, node)
        elif isinstance(node, ast.ClassDef):
            stub.classes[node.name] = _parse_class(node)
        elif _is_typing_only(node):
            stub.typing_only.add(_target_name(node))
        elif isinstance(node, ast.AnnAssign):
            stub.constants[_target_name(node)] = node
        else:
            raise AssertionError(f"stub line {node.lineno}: unsupported statement "
                                 f"{ast.unparse(node)!r}; teach tests/test_stub.py about it")
    return stub


@pytest.fixture(scope="module")
def stub() -> Stub:
    return parse_stub(STUB.read_text(encoding="utf-8"))


# ------------------------------------------------------------ the runtime --

def runtime_module_names() -> set[str]:
    return {n for n in vars(_core) if not (n.startswith("__") and n.endswith("__"))}


def foreign_buffer_type() -> type:
    """ForeignBuffer is not a module attribute: get it as ``memoryview.obj``."""
    view = _core._roundtrip(memoryview(bytearray(8)))
    try:
        return type(view.obj)
    finally:
        view.release()
        _core._run_deferred()


def runtime_class(stub_class: StubClass) -> type:
    if stub_class.type_check_only:
        if stub_class.name == "ForeignBuffer":
            return foreign_buffer_type()
        pytest.fail(f"{stub_class.name}: @type_check_only class the test cannot find at run time")
    runtime = getattr(_core, stub_class.name)
    assert isinstance(runtime, type)
    return runtime


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


# ------------------------------------------------------------------- tests --

def test_stub_and_marker_ship_with_the_extension() -> None:
    assert STUB.is_file(), f"{STUB} is not installed: package-data must include *.pyi"
    assert (PKG / "py.typed").is_file(), f"{PKG / 'py.typed'} is not installed"
    # The stub only applies if it sits beside the extension module it describes.
    assert Path(_core.__file__).resolve().parent == PKG


def test_installed_stub_is_the_repository_stub() -> None:
    if not REPO_STUB.is_file():
        pytest.skip("not run from a source checkout")
    assert STUB.read_bytes() == REPO_STUB.read_bytes(), (
        "the installed multigil/_core.pyi differs from src/multigil/_core.pyi: reinstall "
        "(bash scripts/setup.sh)")


def test_stub_is_valid_python_312_syntax() -> None:
    ast.parse(STUB.read_text(encoding="utf-8"), str(STUB), feature_version=(3, 12))


def test_module_names_match(stub: Stub) -> None:
    runtime = runtime_module_names()
    missing_in_stub = sorted(runtime - stub.runtime_names)
    missing_at_runtime = sorted(stub.runtime_names - runtime)
    assert not missing_in_stub, f"in multigil._core but not in _core.pyi: {missing_in_stub}"
    assert not missing_at_runtime, f"in _core.pyi but not in multigil._core: {missing_at_runtime}"
    assert not stub.typing_only & runtime, "a stub type alias shadows a runtime name"
    for name in stub.typing_only:
        assert name.startswith("_"), f"type alias / TypeVar {name!r} of the stub should be private"


def test_kinds_match(stub: Stub) -> None:
    for name in stub.functions:
        obj = getattr(_core, name)
        assert isinstance(obj, types.BuiltinFunctionType), f"{name}: a function in the stub, {obj!r} at run time"
    for name, cls in stub.classes.items():
        if not cls.type_check_only:
            assert isinstance(getattr(_core, name), type), f"{name}: a class in the stub, not at run time"
    for name in stub.constants:
        obj = getattr(_core, name)
        assert not callable(obj), f"{name}: a constant in the stub, callable at run time"


def test_constant_values(stub: Stub) -> None:
    for name, node in stub.constants.items():
        if node.value is not None and not (isinstance(node.value, ast.Constant) and node.value.value is ...):
            assert ast.literal_eval(node.value) == getattr(_core, name), name


def test_type_check_only_classes_are_not_module_attributes(stub: Stub) -> None:
    for name, cls in stub.classes.items():
        if cls.type_check_only:
            assert not hasattr(_core, name), f"{name} exists at run time: drop @type_check_only"


def test_foreign_buffer_is_the_type_of_received_views(stub: Stub) -> None:
    tp = foreign_buffer_type()
    assert tp.__name__ == "ForeignBuffer"
    assert "ForeignBuffer" in stub.classes


def _class_names() -> list[str]:
    return sorted(parse_stub(STUB.read_text(encoding="utf-8")).classes) if STUB.is_file() else []


@pytest.mark.parametrize("name", _class_names())
def test_class_matches(stub: Stub, name: str) -> None:
    sc = stub.classes[name]
    rc = runtime_class(sc)
    own = vars(rc)

    # Plain members, both ways (inherited ones belong to the base's check).
    runtime_members = {n for n in own if not _is_dunder(n)}
    stub_members = {n for n in sc.members if not _is_dunder(n)}
    assert not runtime_members - stub_members, f"{name}: not in the stub: {sorted(runtime_members - stub_members)}"
    assert not stub_members - runtime_members, f"{name}: not at run time: {sorted(stub_members - runtime_members)}"

    # Properties are C getters (PyGetSetDef) or members (PyMemberDef), methods are methods.
    for prop in sc.properties:
        descr = inspect.getattr_static(rc, prop)
        assert isinstance(descr, (types.GetSetDescriptorType, types.MemberDescriptorType, property)), (
            f"{name}.{prop}: a property in the stub, {type(descr).__name__} at run time")
    for meth in sc.methods:
        if meth in ("__new__", "__init__"):
            continue
        descr = inspect.getattr_static(rc, meth)
        assert callable(descr), f"{name}.{meth}: a method in the stub, {type(descr).__name__} at run time"

    # Protocol dunders the C code defines through slots must be declared, and
    # every dunder of the stub must exist.
    runtime_protocol = {n for n in own if n in PROTOCOL_DUNDERS}
    assert not runtime_protocol - set(sc.methods), (
        f"{name}: slots not declared in the stub: {sorted(runtime_protocol - set(sc.methods))}")
    for dunder in (n for n in sc.methods if _is_dunder(n)):
        assert hasattr(rc, dunder), f"{name}.{dunder}: in the stub, not at run time"
        if dunder in ("__eq__", "__hash__"):
            assert dunder in own, f"{name}.{dunder}: the stub declares it, the type inherits object's"

    # @final exactly where the type cannot be subclassed.
    subclassable = bool(rc.__flags__ & _TPFLAGS_BASETYPE)
    assert sc.final == (not subclassable), (
        f"{name}: @final in the stub is {sc.final}, but the type {'can' if subclassable else 'cannot'} "
        "be subclassed")

    # Bases.
    runtime_bases = [b.__name__ for b in rc.__bases__ if b is not object]
    assert sc.bases == runtime_bases, f"{name}: bases {sc.bases} in the stub, {runtime_bases} at run time"


# ------------------------------------------------------------- signatures --

@dataclass(frozen=True)
class Param:
    name: str                # "*args" / "**kwargs" for the variadic ones
    default: Any             # inspect.Parameter.empty for none, ... where the stub says "..."
    positional_only: bool


def _stub_params(fn: ast.FunctionDef, drop_first: bool) -> list[Param]:
    args = fn.args
    empty = inspect.Parameter.empty
    positional = [(a, True) for a in args.posonlyargs] + [(a, False) for a in args.args]
    defaults: list[Any] = [empty] * (len(positional) - len(args.defaults))
    defaults += [ast.literal_eval(d) for d in args.defaults]
    params = [Param(a.arg, d, posonly) for (a, posonly), d in zip(positional, defaults)]
    if args.vararg:
        params.append(Param("*" + args.vararg.arg, empty, False))
    for a, kd in zip(args.kwonlyargs, args.kw_defaults):
        params.append(Param(a.arg, empty if kd is None else ast.literal_eval(kd), False))
    if args.kwarg:
        params.append(Param("**" + args.kwarg.arg, empty, False))
    return params[1:] if drop_first else params


# Python 3.13+ gives a C function whose docstring has no text signature one made
# from its flags: METH_O shows as "(object, /)", METH_NOARGS as "()".
_SYNTHETIC_METH_O = "object"


def _runtime_params(obj: object, is_method: bool) -> list[Param] | None:
    """The parameters of the text signature of the C docstring; None without one."""
    try:
        sig = inspect.signature(obj)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return None
    params = []
    for p in sig.parameters.values():
        prefix = "*" if p.kind == p.VAR_POSITIONAL else "**" if p.kind == p.VAR_KEYWORD else ""
        params.append(Param(prefix + p.name, p.default, p.kind == p.POSITIONAL_ONLY))
    # "$self" in the text signature shows as a first parameter named self; a
    # text signature without it (a bug of the docstring) shows none.
    if is_method and params and params[0].name == "self":
        params = params[1:]
    return params


def _signature_mismatches(label: str, node: ast.FunctionDef, drop_first: bool,
                          runtime: list[Param]) -> list[str]:
    expected = _stub_params(node, drop_first)
    names = [p.name for p in expected]
    runtime_names = [p.name for p in runtime]
    if runtime_names == [_SYNTHETIC_METH_O] and runtime[0].positional_only:
        runtime_names = names[:1]   # METH_O: one positional-only parameter, name unknown
    if names != runtime_names:
        return [f"{label}: parameters {names} in the stub, {runtime_names} at run time"]
    problems = []
    for sp, rp in zip(expected, runtime):
        if sp.default is not ... and sp.default != rp.default:
            problems.append(f"{label}({sp.name}): default {sp.default!r} in the stub, "
                            f"{rp.default!r} at run time")
        # Only this way round: a text signature may lack the "/" of a METH_O
        # function, and the stub says what the C code really accepts.
        if rp.positional_only and not sp.positional_only:
            problems.append(f"{label}({sp.name}): positional-only at run time, not in the stub")
    return problems


def test_signatures_match_text_signatures(stub: Stub) -> None:
    """Where the C docstring starts with a text signature ("put(obj, ...)\n--\n\n"),
    the stub has the same parameter names and defaults.  (Functions without one
    are left to mypy.stubtest, which cannot check them either.)"""
    problems: list[str] = []
    checked = 0
    for fname, fn in stub.functions.items():
        runtime = _runtime_params(getattr(_core, fname), is_method=False)
        if runtime is not None:
            checked += 1
            problems += _signature_mismatches(fname, fn.node, False, runtime)
    for cname, sc in stub.classes.items():
        rc = runtime_class(sc)
        for mname, meth in sc.methods.items():
            if mname in ("__new__", "__init__"):
                # The class's text signature (tp_doc "Queue(maxsize=0)\n--\n\n")
                # describes the constructor.
                runtime = _runtime_params(rc, is_method=False)
            elif _is_dunder(mname) or mname not in vars(rc):
                continue  # missing ones are test_class_matches' to report
            else:
                runtime = _runtime_params(inspect.getattr_static(rc, mname), is_method=True)
            if runtime is not None:
                checked += 1
                problems += _signature_mismatches(f"{cname}.{mname}", meth.node, True, runtime)
    assert checked > 0
    assert not problems, "\n".join(problems)


def test_constructors_without_parameters_take_none(stub: Stub) -> None:
    """A class without __new__/__init__ in the stub must take no arguments."""
    for name, sc in stub.classes.items():
        if sc.type_check_only or "__new__" in sc.methods or "__init__" in sc.methods:
            continue
        if any("__new__" in s.methods or "__init__" in s.methods
               for b in sc.bases if (s := stub.classes.get(b)) is not None):
            continue
        with pytest.raises(TypeError):
            getattr(_core, name)(1)
        getattr(_core, name)()


# --------------------------------------------------------------- stubtest --

def test_mypy_stubtest(tmp_path: Path) -> None:
    pytest.importorskip("mypy.stubtest")
    if not ALLOWLIST.is_file():
        pytest.skip(f"{ALLOWLIST.name} is missing (not a source checkout)")
    # Only the stub on mypy's path: the package's own .py files would be checked too.
    stubs = tmp_path / "stubs" / "multigil"
    stubs.mkdir(parents=True)
    (stubs / "__init__.pyi").write_text("")
    shutil.copy(STUB, stubs / "_core.pyi")
    config = tmp_path / "mypy.ini"
    config.write_text(f"[mypy]\ncache_dir = {tmp_path / 'cache'}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    env["MYPYPATH"] = str(stubs.parent)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "multigil._core", "--mypy-config-file", str(config),
         "--allowlist", str(ALLOWLIST)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=50,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
