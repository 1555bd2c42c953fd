"""The ``multigil check`` subcommand: its arguments and what it does with them.

:mod:`multigil.__main__` finds this module through its subcommand table. Keep
the imports light: ``multigil --help`` imports every subcommand module.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Callable

from . import targets

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .report import Distribution
    from .result import Result

__all__ = ["HELP", "configure", "run"]

HELP = "tell which modules can be imported in an isolated interpreter"

DESCRIPTION = """\
Import each module in a fresh isolated interpreter (own GIL, as multigil's
interpreters and pools use) and say whether it works there. Most third-party
C extensions (numpy, pydantic-core, PyO3 and Cython modules, ...) refuse to
load in isolated interpreters, and so does any module that imports them.
For a package, the submodules users import are checked too (PIL imports,
PIL.Image does not). Every check runs in a child process, so a module that
crashes or hangs cannot take this one down.

statuses:
  ok       imports in an isolated interpreter (a package: so do its submodules)
  partial  a package that imports, but some of its submodules do not (named)
  refuses  a C extension it needs does not support isolated interpreters
  missing  not importable at all (not installed, or not on sys.path)
  error    its import raises another exception (shown)
  crashes  its import kills the process (signal or exit status shown)
  timeout  its import took longer than --timeout

exit status: 0 if every module is ok, 1 if any is not, 2 on a usage error.
"""

EPILOG = """\
examples:
  multigil check json numpy PIL mypackage.core
  multigil check --installed
  multigil check --requirements requirements.txt --json > check.json
  multigil check --installed --markdown > compatibility.md
"""

DEFAULT_TIMEOUT = 60.0


def _module_name(text: str) -> str:
    if not targets.is_module_name(text):
        hint = ""
        if targets.is_module_name(text.replace("-", "_")):
            hint = (f" (a distribution name? its module may be {text.replace('-', '_')!r}; "
                    "--requirements maps distributions to modules)")
        raise argparse.ArgumentTypeError(f"not a module name: {text!r}{hint}")
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
    return value


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"must be between 1 and 256, got {value}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _requirements(text: str) -> list[str]:
    # Read at parse time: a wrong path is a usage error (exit 2), found
    # before any checking starts.
    try:
        return targets.parse_requirements(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text!r}: {exc}") from None


_seconds.__name__ = "seconds"  # what argparse names in its own messages
_jobs.__name__ = "number"
_count.__name__ = "number"
_requirements.__name__ = "requirements file"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``multigil check`` to *parser*."""
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("modules", nargs="*", metavar="MODULE", type=_module_name,
                        help="dotted module names to check")
    parser.add_argument("--installed", action="store_true",
                        help="check every top-level module of the installed distributions")
    parser.add_argument("--requirements", "-r", action="append", default=[],
                        metavar="FILE", type=_requirements,
                        help="check the modules of the distributions a pip requirements "
                             "file names (may be repeated)")
    parser.add_argument("--all", action="store_true", dest="include_private",
                        help="with --installed or --requirements, also check private "
                             "modules (names starting with '_')")
    parser.add_argument("--no-submodules", action="store_const", const=0,
                        dest="submodules", default=targets.DEFAULT_SUBMODULES,
                        help="check only the modules named, not the submodules of packages")
    parser.add_argument("--max-submodules", type=_count, dest="submodules", metavar="N",
                        help="submodules checked per package (default: "
                             f"{targets.DEFAULT_SUBMODULES})")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true",
                        help="print JSON (every submodule's verdict included) instead of "
                             "the table")
    output.add_argument("--markdown", action="store_true",
                        help="print a Markdown page: the table, the details, and what "
                             "library authors can change")
    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"time allowed per module (default: {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--jobs", "-j", type=_jobs, default=None, metavar="N",
                        help="checking processes run at a time (default: up to 4, "
                             "one per CPU)")
    parser.set_defaults(_check_parser=parser)


def _usage_error(args: argparse.Namespace, message: str) -> int:
    parser: argparse.ArgumentParser = args._check_parser
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return 2


def _collect(args: argparse.Namespace) -> tuple[list[targets.Target], list[str]]:
    """The modules to check, in order, and warnings about the choice."""
    chosen: dict[str, targets.Target] = {}
    warnings: list[str] = []
    for name in args.modules:
        chosen.setdefault(name, targets.Target(name))
    distributions = [name for names in args.requirements for name in names]
    if distributions:
        found, unresolved = targets.modules_of_distributions(distributions,
                                                             args.include_private)
        for target in found:
            chosen.setdefault(target.module, target)
        if unresolved:
            warnings.append(
                "not installed here, checked under a module name guessed from the "
                f"distribution name: {', '.join(unresolved)}")
    if args.installed:
        for target in targets.installed_modules(args.include_private):
            chosen.setdefault(target.module, target)
    unknown = [name for name, target in chosen.items() if not target.distributions]
    if unknown:
        for name, dists in targets.distributions_of(unknown).items():
            chosen[name].distributions = dists
    return list(chosen.values()), warnings


def _progress() -> Callable[[Result, int, int], None] | None:
    # A live counter only for people watching; the total grows as packages
    # name their submodules.
    if not sys.stderr.isatty():
        return None

    def show(result: Result, done: int, total: int) -> None:
        if total < 4:
            return
        end = "\n" if done == total else ""
        print(f"\r\033[Kchecked {done}/{total}: {result.module}", end=end,
              file=sys.stderr, flush=True)

    return show


def run(args: argparse.Namespace) -> int:
    """Run ``multigil check`` with parsed *args*; return the exit status."""
    # Not at import time: ``multigil --help`` imports this module.
    from . import report
    from .runner import check_modules

    if not (args.modules or args.installed or args.requirements):
        return _usage_error(args, "name modules to check, or use --installed or --requirements")
    chosen, warnings = _collect(args)
    if not chosen:
        return _usage_error(args, "no modules to check (the requirements name none)")
    outcome = check_modules([t.module for t in chosen], timeout=args.timeout,
                            jobs=args.jobs, submodules=args.submodules, progress=_progress())
    for target, result in zip(chosen, outcome.results):
        result.distributions = list(target.distributions)
    warnings += outcome.warnings
    results = outcome.results
    rows: list[report.Distribution] = []
    if args.installed or args.requirements:
        names = {dist for result in results for dist in result.distributions}
        rows = report.by_distribution(results, targets.versions(names))
    try:
        _print(args, results, rows, warnings)
    except BrokenPipeError:
        # Piped into ``head`` and the like: the reader left, which is fine.
        # Point stdout at /dev/null so that the exit-time flush is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    for warning in warnings:
        print(textwrap.fill(f"warning: {warning}", width=88, subsequent_indent="  ",
                            break_on_hyphens=False), file=sys.stderr)
    return report.exit_status(results)


def _print(args: argparse.Namespace, results: list[Result], rows: list[Distribution],
           warnings: list[str]) -> None:
    """The report on stdout: JSON, Markdown, or the table, summary and hints.

    With *rows* (``--installed``, ``--requirements``) the table has a row per
    distribution; else one per module.
    """
    from . import markdown, report

    if args.json:
        json.dump(report.to_json(results, warnings, rows), sys.stdout, indent=2)
        print()
    elif args.markdown:
        print(markdown.page(results, rows, warnings), end="")
    else:
        print(report.distribution_table(rows) if rows else report.table(results))
        print()
        if rows:
            print(report.summary(rows, "distribution"))
        print(report.summary(results))
        for hint in report.hints(results):
            print(textwrap.fill(hint, width=88, subsequent_indent="      ",
                                break_on_hyphens=False))
    sys.stdout.flush()  # a closed pipe raises here, inside run()'s handler
