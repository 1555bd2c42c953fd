"""Turn a Dask task (a ``dask._task_spec`` graph node) into a plan that runs
in an interpreter without Dask (see ``_calls`` for the plan's form).

Dask's worker hands its executor the task's graph node and the values of its
dependencies; the node's ``__call__`` would evaluate it with Dask's own code,
which cannot run in an isolated interpreter next to ``distributed``.  So the
worker translates the node here, in the main interpreter, and the interpreter
evaluates the plan: the task's own functions run there, Dask's bookkeeping
stays in the worker.

Node types this module does not know are sent whole (``NODE``): they then
run with Dask's code inside the interpreter, which imports ``dask`` there
(it can; only ``distributed`` cannot).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dask import _task_spec as ts

from ._calls import CALL, CONST, DICT, GRAPH, LIST, NODE, REF, SET, TUPLE

__all__ = ["Call", "translate"]

# (func, args, kwargs): the task is one call whose arguments are known values.
Call = tuple[Callable[..., Any], tuple[Any, ...], "dict[str, Any] | None"]

_CONTAINERS: dict[type, int] = {ts.List: LIST, ts.Tuple: TUPLE, ts.Set: SET}
_identity_cast = getattr(ts, "_identity_cast", None)
_execute_subgraph = getattr(ts, "_execute_subgraph", None)


def translate(node: Any, data: Mapping[Any, Any]) -> tuple[str, Any]:
    """What to run for the task ``node``, given its dependencies' values.

    ``("call", (func, args, kwargs))``
        the task is one call of known values (the common case: a delayed
        function, ``client.submit``): run ``func(*args, **kwargs)``.
    ``("plan", (plan, env))``
        evaluate ``plan`` with ``env`` (the dependencies it uses) as scope.
    ``("local", None)``
        the node calls nothing (data, an alias, a container of results):
        not worth a trip to an interpreter; let Dask evaluate it.
    """
    kind = type(node)
    if kind is ts.Task and node.func is not _execute_subgraph and node.func is not _identity_cast:
        args = node.args
        kwargs = node.kwargs
        if all(_is_value(a) for a in args) and all(_is_value(v) for v in kwargs.values()):
            call_args = tuple(_value(a, data) for a in args)
            call_kwargs = {k: _value(v, data) for k, v in kwargs.items()} if kwargs else None
            call: Call = (node.func, call_args, call_kwargs)
            return "call", call
    plan = _plan(node)
    if not _calls_something(plan):
        return "local", None
    return "plan", (plan, {k: data[k] for k in node.dependencies})


def _calls_something(plan: tuple[Any, ...]) -> bool:
    op = plan[0]
    if op in (CONST, REF):
        return False
    if op in (LIST, TUPLE, SET):
        return any(_calls_something(p) for p in plan[1])
    if op == DICT:
        return any(_calls_something(k) or _calls_something(v) for k, v in plan[1])
    return True  # CALL, GRAPH, NODE


def _is_value(arg: Any) -> bool:
    """True for an argument known before the call: a literal, a reference to
    a dependency, an alias of one, or data."""
    return not isinstance(arg, ts.GraphNode) or type(arg) in (ts.Alias, ts.DataNode)


def _value(arg: Any, data: Mapping[Any, Any]) -> Any:
    if isinstance(arg, ts.TaskRef):
        return data[arg.key]
    if type(arg) is ts.Alias:
        return data[arg.target]
    if type(arg) is ts.DataNode:
        return arg.value
    return arg


def _plan(node: Any) -> tuple[Any, ...]:
    kind = type(node)
    if kind is ts.TaskRef:
        return (REF, node.key)
    if kind is ts.Alias:
        return (REF, node.target)
    if kind is ts.DataNode:
        return (CONST, node.value)
    if kind in _CONTAINERS:
        return (_CONTAINERS[kind], tuple(_plan_arg(a) for a in node.args))
    if kind is ts.Dict:
        items = node.args
        return (DICT, tuple((_plan_arg(items[i]), _plan_arg(items[i + 1]))
                            for i in range(0, len(items), 2)))
    if kind is ts.Task:
        if node.func is _execute_subgraph and not node.kwargs:
            return _subgraph(*node.args)
        if node.func is _identity_cast and set(node.kwargs) == {"typ"} \
                and not isinstance(node.kwargs["typ"], (ts.GraphNode, ts.TaskRef)):
            items = (TUPLE, tuple(_plan_arg(a) for a in node.args))
            return (CALL, node.kwargs["typ"], (items,), None)
        kwargs = {k: _plan_arg(v) for k, v in node.kwargs.items()} or None
        return (CALL, node.func, tuple(_plan_arg(a) for a in node.args), kwargs)
    # A node of a kind not known here: Dask evaluates it in the interpreter.
    return (NODE, node, tuple(node.dependencies))


def _plan_arg(arg: Any) -> tuple[Any, ...]:
    if isinstance(arg, (ts.GraphNode, ts.TaskRef)):
        return _plan(arg)
    return (CONST, arg)


def _subgraph(inner: Mapping[Any, Any], outkey: Any, inkeys: tuple[Any, ...],
              *dependencies: Any) -> tuple[Any, ...]:
    """``_execute_subgraph(inner, outkey, inkeys, *dependencies)`` as a plan:
    the inner nodes in dependency order, each key dropped after its last use."""
    inputs = tuple((k, _plan_arg(d)) for k, d in zip(inkeys, dependencies))
    order = _toposort(inner, outkey)
    last_use: dict[Any, int] = {}
    for i, key in enumerate(order):
        for dep in inner[key].dependencies:
            last_use[dep] = i
    drops: list[list[Any]] = [[] for _ in order]
    for dep, i in last_use.items():
        if dep != outkey:
            drops[i].append(dep)
    steps = tuple((key, _plan(inner[key]), tuple(drops[i])) for i, key in enumerate(order))
    return (GRAPH, inputs, steps, outkey)


def _toposort(inner: Mapping[Any, Any], outkey: Any) -> list[Any]:
    """The keys of ``inner`` that ``outkey`` needs, each after its dependencies."""
    order: list[Any] = []
    seen: set[Any] = set()
    stack: list[tuple[Any, bool]] = [(outkey, False)]
    while stack:
        key, expanded = stack.pop()
        if expanded:
            order.append(key)
            continue
        if key in seen or key not in inner:
            continue
        seen.add(key)
        stack.append((key, True))
        stack.extend((dep, False) for dep in inner[key].dependencies if dep not in seen)
    return order
