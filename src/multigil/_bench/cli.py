"""The ``multigil bench`` subcommand: its arguments and what it does with them.

:mod:`multigil.__main__` finds this module through its subcommand table and
calls :func:`configure` to add the arguments and :func:`run` to execute. Keep
the imports here light: ``multigil --help`` imports every subcommand module.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Callable

from .suite import SUITE, Workload, resolve

__all__ = ["HELP", "configure", "run"]

HELP = "measure multigil against serial, threads and processes on this machine"

DESCRIPTION = """\
Run a benchmark suite on this machine and print one table per group:
CPU-bound pure Python (with speed-up vs serial at 1..N workers), tiny tasks
(per-task overhead), data transfer, pool start-up and memory per idle worker.
Contenders: serial, ThreadPoolExecutor, ProcessPoolExecutor, multigil's
InterpreterPoolExecutor, and the stdlib InterpreterPoolExecutor (3.14+).
All run interleaved, round by round, in this one process; every figure is
the median of the rounds with ± half the interquartile range.
"""

EPILOG = """\
names for --only:
  {names}

examples:
  multigil bench                      full run (under a minute on 2 cores)
  multigil bench --quick              a smaller run for CI (well under 20 s)
  multigil bench --only cpu,tiny/map  just these
  multigil bench --json out.json --plot scaling.png
"""


def _positive(limit: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not 1 <= value <= limit:
            raise argparse.ArgumentTypeError(f"must be between 1 and {limit}, got {value}")
        return value

    parse.__name__ = "number"  # what argparse names in its own messages
    return parse


def _only(text: str) -> list[Workload]:
    try:
        chosen = resolve(text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not chosen:
        raise argparse.ArgumentTypeError("expected one or more comma-separated names")
    return chosen


def _output(suffix: str | None) -> Callable[[str], str]:
    # Check the path before the run, not after a minute of measuring.
    def parse(text: str) -> str:
        folder = os.path.dirname(os.path.abspath(text))
        if not os.path.isdir(folder):
            raise argparse.ArgumentTypeError(f"folder {folder!r} does not exist")
        if os.path.isdir(text):
            raise argparse.ArgumentTypeError(f"{text!r} is a folder")
        if suffix and not text.lower().endswith(suffix):
            raise argparse.ArgumentTypeError(f"expected a {suffix} file name, got {text!r}")
        return text

    parse.__name__ = "file name"
    return parse


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` arguments to *parser*."""
    from .suite import valid_names

    parser.description = DESCRIPTION
    names = textwrap.fill(", ".join(valid_names()), 76, subsequent_indent="  ")
    parser.epilog = EPILOG.format(names=names)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes and 3 rounds: for CI, well under 20 s"
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="also run process pools with every other start method (fork, forkserver, spawn)",
    )
    parser.add_argument(
        "--workers",
        type=_positive(1024),
        metavar="N",
        help="largest pool size; scaling runs 1..N (default: the CPUs this process may use)",
    )
    parser.add_argument(
        "--only",
        type=_only,
        metavar="NAME[,NAME]",
        help="run only these workloads or groups (see the list below)",
    )
    parser.add_argument(
        "--repeats",
        type=_positive(1000),
        metavar="N",
        help="timed rounds per workload (default: 5, or 3 with --quick)",
    )
    parser.add_argument(
        "--json", type=_output(None), metavar="FILE", help="also write every sample to FILE as JSON"
    )
    parser.add_argument(
        "--plot",
        type=_output(".png"),
        metavar="FILE.png",
        help="also draw the CPU scaling chart (needs the 'plot' extra: matplotlib)",
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="do not show progress on stderr"
    )


def run(args: argparse.Namespace) -> int:
    """Run the suite as *args* say; print the report; return the exit status.

    Returns
    -------
    int
        0 on success, 1 if an output file could not be written, 2 if
        ``--plot`` was asked for without matplotlib, 130 if interrupted.
    """
    # Imported here, not at the top: they are only needed once we really run.
    from . import plot, report
    from .contenders import discover
    from .progress import Progress
    from .runner import RunConfig, cpu_count, run_suite, worker_counts_for

    for stream in (sys.stdout, sys.stderr):
        # The report uses ×, ±, µ and —: never die on a terminal whose encoding
        # lacks one of them.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="replace")
            except (ValueError, OSError):
                pass
    if args.plot:
        try:
            plot.check()
        except plot.MissingMatplotlib as exc:
            print(f"multigil bench: {exc}", file=sys.stderr)
            return 2

    workers = args.workers or cpu_count()
    config = RunConfig(
        max_workers=workers,
        worker_counts=worker_counts_for(workers),
        repeats=args.repeats or (3 if args.quick else 5),
        quick=args.quick,
        tasks_per_worker=2 if args.quick else 4,
    )
    workloads = args.only or list(SUITE)
    contenders = discover(all_start_methods=args.all)
    results = run_suite(
        workloads,
        contenders,
        config,
        progress_factory=lambda total: Progress(total, enabled=args.progress),
    )
    print(report.render(results), flush=True)

    status = 130 if results.interrupted else 0
    if args.json:
        options = {"all": args.all, "only": [wl.name for wl in workloads]}
        try:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(report.to_json(results, options), f, indent=2, allow_nan=False)
                f.write("\n")
        except (OSError, ValueError) as exc:
            print(f"multigil bench: could not write {args.json}: {exc}", file=sys.stderr)
            status = status or 1
        else:
            print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        try:
            plot.write_scaling_chart(results, args.plot)
        except plot.MissingMatplotlib as exc:  # found, but failed to import
            print(f"multigil bench: {exc}", file=sys.stderr)
            status = status or 2
        except OSError as exc:
            print(f"multigil bench: could not write {args.plot}: {exc}", file=sys.stderr)
            status = status or 1
        else:
            print(f"wrote {args.plot}", file=sys.stderr)
    return status
