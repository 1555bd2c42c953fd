"""What the integrations run inside an interpreter (standard library only).

The engines do their bookkeeping in the main interpreter and send here only
the user's own calls: joblib the ``(func, args, kwargs)`` items of a batch,
Dask a task's function with its arguments, or a small *plan* when the task
nests calls (a fused chain of a bag, containers of results).

A plan is a tree of tuples whose first item says what to do:

``(CONST, value)``
    the value itself
``(REF, key)``
    the value bound to ``key`` in the current scope
``(CALL, func, (arg, ...), {name: arg} or None)``
    ``func(*args, **kwargs)``, each argument a plan
``(LIST | TUPLE | SET, (item, ...))``, ``(DICT, ((key, value), ...))``
    a container of plans
``(GRAPH, ((key, plan), ...), ((key, plan, (key, ...)), ...), out)``
    a sub-graph: the first pairs bind the sub-graph's inputs (evaluated in
    the outer scope), then each step binds its key in the new scope and
    drops the keys it used last; the value of ``out`` is the result
``(NODE, node, (key, ...))``
    a graph node of a kind the translator does not know: ``node(values)``
    with the values of those keys (the engine's own code then runs here)
"""

from __future__ import annotations

import time
from functools import partial

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

__all__ = ["task_function", "run_batch", "map_calls", "map_values", "timed_call", "timed_plan",
           "evaluate", "CONST", "REF", "CALL", "LIST", "TUPLE", "SET", "DICT", "GRAPH", "NODE"]

CONST, REF, CALL, LIST, TUPLE, SET, DICT, GRAPH, NODE = range(9)


def task_function(runner: Callable[..., Any], work: Any) -> Callable[..., Any]:
    """``runner`` bound to the user's ``work`` (a function, a batch, a plan),
    as the one callable an executor sends.

    Whatever holds the user's functions is the task's *function*, not an
    argument: if it cannot be rebuilt in the interpreter (a module that
    imports a C extension refusing interpreters), the pool reports that as
    the task's failure at once -- or, with a fallback, runs it elsewhere --
    exactly as for a function given to ``pool.submit`` itself.  The data
    stays in the arguments, which cross natively.
    """
    return partial(runner, work)


def run_batch(items: Iterable[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]
              ) -> list[Any]:
    """The results of ``func(*args, **kwargs)`` for each item, in order."""
    return [func(*args, **kwargs) for func, args, kwargs in items]


def map_calls(func: Callable[..., Any], arglist: Iterable[tuple[Any, ...]],
              kwlist: Iterable[dict[str, Any]] | None = None) -> list[Any]:
    """``[func(*args, **kwargs) ...]`` for the pairs of ``arglist`` and
    ``kwlist`` (None: no keyword arguments): a batch of calls of one
    function, which is sent once."""
    if kwlist is None:
        return [func(*args) for args in arglist]
    return [func(*args, **kwargs) for args, kwargs in zip(arglist, kwlist, strict=True)]


def map_values(func: Callable[[Any], Any], values: Iterable[Any]) -> list[Any]:
    """``[func(value) for value in values]``: the same, one argument each."""
    return [func(value) for value in values]


def timed_call(func: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any] | None) -> tuple[float, float, Any]:
    """``(start, stop, func(*args, **kwargs))``, times from ``time.time()``."""
    start = time.time()
    result = func(*args, **kwargs) if kwargs else func(*args)
    return start, time.time(), result


def timed_plan(plan: tuple[Any, ...], env: Mapping[Any, Any]) -> tuple[float, float, Any]:
    """``(start, stop, value of plan)`` with ``env`` as the outer scope."""
    start = time.time()
    result = evaluate(plan, env)
    return start, time.time(), result


def evaluate(plan: tuple[Any, ...], env: Mapping[Any, Any]) -> Any:
    """The value of ``plan`` (see the module docstring) in scope ``env``."""
    op = plan[0]
    if op == CONST:
        return plan[1]
    if op == REF:
        return env[plan[1]]
    if op == CALL:
        _, func, args, kwargs = plan
        values = [evaluate(a, env) for a in args]
        if kwargs:
            return func(*values, **{k: evaluate(v, env) for k, v in kwargs.items()})
        return func(*values)
    if op == LIST:
        return [evaluate(a, env) for a in plan[1]]
    if op == TUPLE:
        return tuple([evaluate(a, env) for a in plan[1]])
    if op == SET:
        return {evaluate(a, env) for a in plan[1]}
    if op == DICT:
        return {evaluate(k, env): evaluate(v, env) for k, v in plan[1]}
    if op == GRAPH:
        _, inputs, steps, out = plan
        scope = {key: evaluate(p, env) for key, p in inputs}
        for key, p, drop in steps:
            scope[key] = evaluate(p, scope)
            for k in drop:
                del scope[k]
        return scope[out]
    if op == NODE:
        _, node, keys = plan
        return node({k: env[k] for k in keys})
    raise ValueError(f"multigil: unknown plan operation {op!r} (a bug: please report it)")
