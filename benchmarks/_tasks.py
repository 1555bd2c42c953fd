"""Tiny task functions for the benchmarks, importable by name in every
interpreter (a function defined in a benchmark's __main__ would travel by
value, which measures cloudpickle, not the call)."""


def noop() -> None:
    return None
