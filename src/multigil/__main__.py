"""The ``multigil`` command line: ``python -m multigil`` and the ``multigil`` script.

Each subcommand lives in its own module, listed in :data:`SUBCOMMANDS`. Such a
module provides:

``HELP``
    one line for ``multigil --help``;
``configure(parser)``
    adds its arguments to its :class:`argparse.ArgumentParser`;
``run(args) -> int``
    does the work and returns the exit status.

To add a subcommand, add one entry to :data:`SUBCOMMANDS`; nothing else here
changes. This module must stay import-safe (no work at import time): process
pools started with ``spawn`` or ``forkserver`` re-import it as ``__mp_main__``
in every child when the parent was started with ``python -m multigil``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

#: Subcommand name -> module implementing it (see the module docstring).
SUBCOMMANDS: dict[str, str] = {
    "bench": "multigil._bench.cli",
    "check": "multigil._check.cli",
}


def _prog() -> str:
    # argparse would say "__main__.py" when run as ``python -m multigil``.
    if os.path.basename(sys.argv[0] or "") == "__main__.py":
        return "python -m multigil"
    return "multigil"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser, with one subparser per entry of :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description="multigil: true multi-core parallelism with isolated sub-interpreters.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=module.HELP)
        module.configure(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse *argv* (default: ``sys.argv[1:]``), run the subcommand, return its status.

    Usage errors return 2 after argparse has printed the usage message, and
    ``--help`` returns 0, instead of raising :class:`SystemExit`, so that
    callers (and tests) can call this like any function.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    try:
        status: int = args._run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
