"""The ``--plot`` scaling chart: speed-up vs serial against the number of workers.

matplotlib is an optional extra (``pip install 'multigil[plot]'``); nothing
here imports it at module level, and :func:`require` says clearly when it is
missing so the CLI can stop *before* a minute-long run rather than after.
"""

from __future__ import annotations

import importlib.util
import math
from types import ModuleType
from typing import Any

from .runner import Results

__all__ = ["MissingMatplotlib", "check", "require", "write_scaling_chart"]

INSTALL_HINT = "pip install 'multigil[plot]'"


class MissingMatplotlib(RuntimeError):
    """matplotlib cannot be imported; the message says how to get it."""


def check() -> None:
    """Fail fast, without importing it, if matplotlib is not installed.

    Importing matplotlib (and numpy under it) before the run would grow this
    process and so every forked worker, and skew the memory figures; the
    import waits for :func:`write_scaling_chart`.

    Raises
    ------
    MissingMatplotlib
        If no ``matplotlib`` package can be found.
    """
    try:
        found = importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingMatplotlib(
            f"--plot needs matplotlib, which is not installed; install it with: {INSTALL_HINT}"
        )


def require() -> ModuleType:
    """Import matplotlib's non-interactive backend and return ``matplotlib.pyplot``.

    Raises
    ------
    MissingMatplotlib
        If matplotlib is not installed (or cannot be imported).
    """
    try:
        import matplotlib

        # Agg draws to files only: no display needed, works on CI and over ssh.
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingMatplotlib(
            f"--plot needs matplotlib, which is not installed ({exc}); install it with: {INSTALL_HINT}"
        ) from None
    # Typed either way: Any while matplotlib (or its typing) is missing here.
    pyplot: ModuleType = plt
    return pyplot


def write_scaling_chart(results: Results, path: str) -> None:
    """Draw one panel per CPU workload and save the figure as a PNG at *path*.

    Each panel has a line per contender (speed-up vs serial at 1..N workers,
    with the interquartile range of the per-round ratios as error bars), the
    ideal ``y = workers`` line, and serial's ``y = 1``.

    Raises
    ------
    MissingMatplotlib
        If matplotlib is not installed.
    """
    plt = require()
    cfg = results.config
    cpu = [wl for wl in results.workloads if wl.group == "cpu"]
    ran = {k[0] for k in results.samples}
    contenders = [c for c in results.contenders if c.name in ran and c.kind != "serial"]
    counts = list(cfg.worker_counts)

    panels = max(1, len(cpu))
    cols = min(panels, 2)
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    flat: list[Any] = [ax for row in axes for ax in row]
    for ax, wl in zip(flat, cpu, strict=False):  # more panels than workloads
        ax.plot(counts, counts, linestyle=":", color="grey", label="ideal")
        ax.axhline(1.0, linestyle="--", color="black", linewidth=0.8, label="serial")
        for c in contenders:
            xs, ys, lo, hi = [], [], [], []
            for k in counts:
                s = results.speedup(c.name, wl.name, k)
                if s is None:
                    continue
                xs.append(k)
                ys.append(s.median)
                lo.append(max(0.0, s.median - s.q1))
                hi.append(max(0.0, s.q3 - s.median))
            if xs:
                ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=c.label)
        ax.set_title(wl.name)
        ax.set_xlabel("workers")
        ax.set_ylabel("speed-up vs serial")
        ax.set_xticks(counts)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    for ax in flat[len(cpu):]:
        ax.set_visible(False)
    if cpu:
        flat[0].legend(fontsize="small")
    else:
        flat[0].text(0.5, 0.5, "no CPU workloads in this run", ha="center", va="center")
    fig.suptitle(
        f"multigil bench: CPU scaling ({cfg.tasks_per_batch} tasks per batch,"
        f" median of {cfg.repeats} rounds)"
    )
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
