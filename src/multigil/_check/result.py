"""One module's verdict, as the worker sends it and the report shows it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["STATUSES", "Result"]

#: Every status, in the order the summary lists them.
STATUSES = ("ok", "partial", "refuses", "missing", "error", "crashes", "timeout")


@dataclass
class Result:
    """How importing one module in an isolated interpreter went.

    Attributes
    ----------
    module : str
        The module's dotted name.
    status : str
        One of :data:`STATUSES`. ``partial``: a package that imports, with
        submodules that do not.
    reason : str
        One line for people.
    extension : str or None
        For ``refuses`` (and ``partial``): the C extension that refused, when known.
    error : str or None
        For ``missing`` and ``error``: ``"Type: message"`` of the exception.
    refused : list of str
        Every C extension that refused to load during the import. For an
        ``ok`` module, those it carried on without (a pure-Python fallback,
        usually slower).
    detail : str or None
        The traceback (``error``), or the end of the checking process's
        standard error (``crashes``, ``timeout``).
    seconds : float or None
        How long the check of this module took.
    distributions : list of str
        The installed distributions providing the module's top-level package.
    fails_in_main : bool
        For ``missing`` and ``error``: the import fails in the main
        interpreter too, so interpreters are not to blame.
    submodules : list of Result
        For a package: the verdict on each submodule checked.
    found : int or None
        For a package: how many submodules users import were found (more than
        ``len(submodules)`` when the walk was cut short); None for a module
        whose submodules were not looked for.
    """

    module: str
    status: str
    reason: str
    extension: str | None = None
    error: str | None = None
    refused: list[str] = field(default_factory=list)
    detail: str | None = None
    seconds: float | None = None
    distributions: list[str] = field(default_factory=list)
    fails_in_main: bool = False
    submodules: list[Result] = field(default_factory=list)
    found: int | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")

    @property
    def ok(self) -> bool:
        """Whether the module imports in an isolated interpreter."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """The inverse of :meth:`to_dict` (unknown keys are ignored)."""
        known = cls.__dataclass_fields__
        fields = {key: value for key, value in data.items() if key in known}
        fields["submodules"] = [cls.from_dict(part) for part in fields.get("submodules", [])]
        return cls(**fields)
