"""Tiny task functions for the benchmarks, importable by name in every
interpreter (a function defined in a benchmark's __main__ would travel by
value, which measures cloudpickle, not the call)."""


def noop() -> None:
    return None


def ident(x: object) -> object:
    return x


def add(a: int, b: int) -> int:
    return a + b


class Box:
    """A module-level class: its class method crosses by reference."""

    @classmethod
    def make(cls, x: object) -> object:
        return x
