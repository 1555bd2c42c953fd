"""Turning :class:`~multigil._bench.runner.Results` into tables, a verdict and JSON.

Tables have one row per workload and one column per contender; each cell is a
median with its spread (``±`` half the interquartile range, in the cell's own
unit) and, for CPU work, the speed-up over serial (``1.72×``). Contenders that
could not run are listed under the tables with the reason, not silently left
out.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

from .contenders import Contender, gil_enabled
from .runner import Results, cpu_count
from .stats import Summary, geomean, paired_ratios, summarize
from .suite import GROUPS, Workload

__all__ = [
    "environment",
    "format_bytes",
    "format_rate",
    "format_time",
    "render",
    "to_json",
    "verdict",
]

SCHEMA = "multigil-bench/1"


# -- numbers ----------------------------------------------------------------------


def _decimals(value: float) -> int:
    """Decimals that give three significant digits (12.3, 1.23, 123)."""
    if value == 0 or not math.isfinite(value):
        return 1
    digits = int(math.floor(math.log10(abs(value)))) + 1
    return max(0, 3 - digits)


def _scaled(value: float, spread: float | None, scale: float, unit: str) -> str:
    v = value / scale
    d = _decimals(v)
    text = f"{v:.{d}f} {unit}"
    if spread is not None:
        text += f" ±{spread / scale:.{d}f}"
    return text


def format_time(seconds: float, spread: float | None = None) -> str:
    """``0.0123`` -> ``"12.3 ms"``; with *spread*, ``"12.3 ms ±0.4"``."""
    a = abs(seconds)
    if a >= 1:
        return _scaled(seconds, spread, 1, "s")
    if a >= 1e-3:
        return _scaled(seconds, spread, 1e-3, "ms")
    if a >= 1e-6:
        return _scaled(seconds, spread, 1e-6, "µs")
    return _scaled(seconds, spread, 1e-9, "ns")


def format_rate(per_second: float, spread: float | None = None) -> str:
    """``98832`` -> ``"98.8k/s"``; with *spread*, ``"98.8k/s ±2.1"`` (same unit)."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")):
        if abs(per_second) >= scale or scale == 1:
            return _scaled(per_second, spread, scale, f"{suffix}/s").replace(" ", "", 1)
    raise AssertionError("unreachable")


def format_bytes(n: float, spread: float | None = None) -> str:
    """``2_831_155`` -> ``"2.70 MiB"``."""
    for scale, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(n) >= scale:
            return _scaled(n, spread, scale, unit)
    return _scaled(n, spread, 1, "B")


def _format(wl: Workload, s: Summary, spread: bool = True) -> str:
    sp = s.spread if spread and s.n > 1 else None
    if wl.unit == "tasks/s":
        return format_rate(s.median, sp)
    if wl.unit == "bytes":
        return format_bytes(s.median, sp)
    return format_time(s.median, sp)


# -- tables ------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left column left-aligned, the rest right-aligned, two spaces apart."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in rows)
    return out


def _ran(results: Results) -> list[Contender]:
    """Contenders with at least one sample, in discovery order."""
    names = {k[0] for k in results.samples}
    return [c for c in results.contenders if c.name in names]


def _cpu_tables(results: Results, wls: list[Workload]) -> list[str]:
    cfg = results.config
    n = cfg.max_workers
    cols = _ran(results)
    out = [
        f"CPU-bound pure Python: one batch of {cfg.tasks_per_batch} tasks on {n} workers,"
        " time per batch and speed-up vs serial",
    ]
    rows = []
    for wl in wls:
        row = [wl.name]
        for c in cols:
            workers = 1 if c.kind == "serial" else n
            s = results.summary(c.name, wl.name, workers)
            if s is None:
                row.append("—")
                continue
            cell = _format(wl, s)
            up = results.speedup(c.name, wl.name, workers)
            if c.kind != "serial" and up is not None:
                cell += f"  {up.median:.2f}×"
            row.append(cell)
        rows.append(row)
    out += _table(["", *[c.label for c in cols]], rows)

    counts = cfg.worker_counts
    if len(counts) > 1 or counts[0] != n:
        out += ["", "Scaling: speed-up vs serial by number of workers (median of per-round ratios)"]
        rows = []
        for wl in wls:
            first = True
            for c in cols:
                if c.kind == "serial":
                    continue
                row = [wl.name if first else "", c.label]
                for k in counts:
                    up = results.speedup(c.name, wl.name, k)
                    row.append("—" if up is None else f"{up.median:.2f}×")
                if any(cell != "—" for cell in row[2:]):
                    rows.append(row)
                    first = False
        out += _table(["", "", *[str(k) for k in counts]], rows)
    return out


def _simple_table(results: Results, title: str, wls: list[Workload], serial: bool) -> list[str]:
    n = results.config.max_workers
    cols = [c for c in _ran(results) if serial or c.kind != "serial"]
    rows = []
    for wl in wls:
        row = [wl.name]
        for c in cols:
            s = results.summary(c.name, wl.name, 1 if c.kind == "serial" else n)
            row.append("—" if s is None else _format(wl, s))
        rows.append(row)
    return [title, *_table(["", *[c.label for c in cols]], rows)]


def render(results: Results) -> str:
    """The human-readable report: one table per group, notes, then the verdict."""
    cfg = results.config
    env = environment()
    py = env["python"]
    out = [
        f"multigil bench — {py['implementation']} {py['version']}"
        f"{'' if py['gil_enabled'] else ' (free-threaded)'}, {env['machine']['cpu_model']},"
        f" {env['machine']['cpus_usable']} CPUs; {cfg.max_workers} workers,"
        f" median ±IQR/2 of {cfg.repeats} interleaved rounds{' (quick)' if cfg.quick else ''}",
    ]
    if results.interrupted:
        out.append("INTERRUPTED: partial results")
    out += _noise_warnings(results)
    by_group: dict[str, list[Workload]] = {}
    for wl in results.workloads:
        by_group.setdefault(wl.group, []).append(wl)
    lab = {c.name: c.label for c in results.contenders}

    # Report order: what people came for first; pools last.
    if "cpu" in by_group:
        out += ["", *_cpu_tables(results, by_group["cpu"])]
    if "tiny" in by_group:
        title = f"{GROUPS['tiny'].capitalize()} ({cfg.max_workers} workers)"
        out += ["", *_simple_table(results, title, by_group["tiny"], True)]
        chunking = results.extras.get("map chunking", {})
        if chunking and any(wl.name == "tiny/map" for wl in by_group["tiny"]):
            how = ", ".join(f"{lab[k]}: {v}" for k, v in chunking.items() if k != "serial")
            out.append(f"  tiny/map: {how}")
    if "data" in by_group:
        title = f"Data transfer ({cfg.max_workers} workers; serial passes by reference)"
        out += ["", *_simple_table(results, title, by_group["data"], True)]
        out += _copy_floor_lines(results, by_group["data"])
    pools = by_group.get("startup", []) + by_group.get("memory", [])
    if pools:
        out += ["", *_simple_table(results, f"Pools of {cfg.max_workers} workers", pools, False)]

    available = {c.name: c.available for c in results.contenders}
    notes = [f"{name}: {why}" for name, why in results.workload_notes.items()]
    notes += [
        f"{'stopped' if available.get(name) else 'not run'}: {lab.get(name, name)}: {why}"
        for name, why in results.notes.items()
    ]
    if notes:
        out += ["", *notes]

    lines = verdict(results)
    if lines:
        out += ["", "Verdict", *[f"  {v}" for v in lines]]
    out.append("")
    out.append(f"({results.elapsed:.1f} s)")
    return "\n".join(out)


def _copy_floor_lines(results: Results, wls: list[Workload]) -> list[str]:
    """Each bytes transfer against one copy of its buffer made in this thread
    (``bytearray(payload)``, measured in the same rounds): 1.0× is the least a
    transfer that copies the bytes once can cost."""
    n = results.config.max_workers
    out = []
    for wl in wls:
        floor = results.references.get(wl.name)
        if not floor:
            continue
        cells = []
        for c in _ran(results):
            if c.kind in ("serial", "threads"):
                continue        # they pass the object itself: no copy to compare
            data = results.samples.get((c.name, wl.name, n))
            ratios = paired_ratios(data, floor) if data else []
            if ratios:
                cells.append(f"{c.label} {summarize(ratios).median:.2f}×")
        out.append(f"  {wl.name} against one copy in this thread"
                   f" ({format_time(summarize(floor).median)}): " + ", ".join(cells))
    return out


def _noise_warnings(results: Results) -> list[str]:
    """Say so when other programs competed for the CPUs during the run."""
    out = []
    share = results.references.get("serial cpu share")
    if share and (median := summarize(share).median) < 0.9:
        out.append(
            f"warning: serial got only {median:.0%} of a CPU while it ran: other programs"
            " are competing for the CPUs, so expect noisy figures (ratios suffer least)"
        )
    load = results.extras.get("load average", {}).get("before")
    if load is not None and load > 0.5 * cpu_count():
        out.append(
            f"warning: load average {load:.1f} on {cpu_count()} CPUs before the run:"
            " the machine was busy"
        )
    return out


# -- verdict ---------------------------------------------------------------------


def _best(results: Results, wl_name: str, cands: list[Contender]) -> tuple[Contender, Summary] | None:
    wl = next((w for w in results.workloads if w.name == wl_name), None)
    if wl is None:
        return None
    n = results.config.max_workers
    found = [(c, s) for c in cands if (s := results.summary(c.name, wl_name, n)) is not None]
    if not found:
        return None
    pick = max if wl.higher_is_better else min
    return pick(found, key=lambda cs: cs[1].median)


def verdict(results: Results) -> list[str]:
    """A few sentences that answer "which one should I use for what"."""
    n = results.config.max_workers
    cpu = [wl for wl in results.workloads if wl.group == "cpu"]
    pool_cs = [c for c in _ran(results) if c.kind != "serial"]
    lines: list[str] = []

    if cpu and pool_cs:
        names = ", ".join(wl.short for wl in cpu)
        lines.append(f"CPU speed-up vs serial at {n} workers (geometric mean over {names}):")
        procs = next((c for c in pool_cs if c.name == "processes"), None)
        width = max(len(c.label) for c in pool_cs)
        for c in pool_cs:
            ups = [s.median for wl in cpu if (s := results.speedup(c.name, wl.name, n))]
            if not ups:
                continue
            text = f"  {c.label.ljust(width)}  {geomean(ups):.2f}×"
            if procs is not None and c is not procs and c.kind != "threads":
                per = {
                    wl.short: s.median
                    for wl in cpu
                    if (s := results.ratio((procs.name, n), (c.name, n), wl.name))
                }
                if per:
                    detail = ", ".join(f"{k} {v:.2f}×" for k, v in per.items())
                    text += f" = {geomean(list(per.values())):.2f}× {procs.label}: {detail}"
            if c.kind == "threads" and gil_enabled():
                text += " (the GIL runs one thread at a time)"
            lines.append(text)

    parallel = [c for c in pool_cs if c.kind != "threads" or not gil_enabled()]
    for wl_name, what in (
        ("tiny/submit", "lowest round trip"),
        ("tiny/map", "highest map throughput"),
        ("data/bytes-16MiB", "cheapest 16 MiB transfer"),
        ("data/ints-100k", "cheapest 100k-int round trip"),
        ("startup/first-result", "fastest start-up"),
        ("memory/idle-worker", "least memory per idle worker"),
    ):
        wl = next((w for w in results.workloads if w.name == wl_name), None)
        best = _best(results, wl_name, pool_cs)
        if wl is None or best is None:
            continue
        text = f"{what}: {best[0].label} {_format(wl, best[1], spread=False)}"
        if best[0] not in parallel:
            alt = _best(results, wl_name, parallel)
            if alt is not None:
                text += f" (of the parallel ones: {alt[0].label} {_format(wl, alt[1], spread=False)})"
        lines.append(text)
    return lines


# -- JSON --------------------------------------------------------------------------


def _cpu_model() -> str:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    # x86 says "model name" ("model" is a number there); ARM kernels say
    # "Hardware" or "Model", some MIPS and POWER ones "cpu model" or "cpu".
    for key in ("model name", "hardware", "cpu model", "model", "cpu"):
        value = fields.get(key, "")
        if value and not value.isdigit():
            return value
    return platform.processor() or platform.machine() or "unknown CPU"


def environment() -> dict[str, Any]:
    """Python and machine facts that make a result file comparable with another."""
    try:
        from importlib.metadata import version

        mg_version: str | None = version("multigil")
    except Exception:  # not installed: running from a source tree
        mg_version = None
    return {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
            "gil_enabled": gil_enabled(),
            "build": " ".join(platform.python_build()),
            "compiler": platform.python_compiler(),
        },
        "machine": {
            "cpu_model": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "cpus_usable": cpu_count(),
            "platform": platform.platform(),
            "arch": platform.machine(),
        },
        "multigil_version": mg_version,
    }


def to_json(results: Results, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The machine-readable form of a run (see ``docs/bench.md`` for the schema)."""
    cfg = results.config
    chunking = results.extras.get("map chunking", {})
    started = results.extras.get("workers started", {})
    rows = []
    by_name = {wl.name: wl for wl in results.workloads}
    for (c, w, n), samples in results.samples.items():
        wl = by_name[w]
        row: dict[str, Any] = {
            "contender": c,
            "workload": w,
            "workers": n,
            "unit": wl.unit,
            **summarize(samples).as_dict(),
            "samples": samples,
        }
        up = results.speedup(c, w, n) if wl.group == "cpu" and c != "serial" else None
        row["speedup_vs_serial"] = None if up is None else up.as_dict()
        rows.append(row)
    return {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **environment(),
        "options": {
            **(options or {}),
            "quick": cfg.quick,
            "repeats": cfg.repeats,
            "max_workers": cfg.max_workers,
            "worker_counts": list(cfg.worker_counts),
            "tasks_per_batch": cfg.tasks_per_batch,
            "task_timeout_s": cfg.task_timeout,
        },
        "load_average_before": results.extras.get("load average", {}).get("before"),
        "elapsed_s": results.elapsed,
        "interrupted": results.interrupted,
        "contenders": [
            {
                "name": c.name,
                "label": c.label,
                "kind": c.kind,
                "available": c.available,
                "ran": any(k[0] == c.name for k in results.samples),
                "note": results.notes.get(c.name, c.note),
                "map_chunking": chunking.get(c.name),
                "workers_started": started.get(c.name),
            }
            for c in results.contenders
        ],
        "workloads": [
            {
                "name": wl.name,
                "group": wl.group,
                "description": wl.description,
                "unit": wl.unit,
                "higher_is_better": wl.higher_is_better,
                "size": wl.sized(cfg.quick),
                "note": results.workload_notes.get(wl.name),
            }
            for wl in results.workloads
        ],
        "results": rows,
        "references": {
            name: {
                **summarize(v).as_dict(),
                "samples": v,
                "unit": "fraction" if name == "serial cpu share" else "s",
            }
            for name, v in results.references.items()
            if v
        },
        "verdict": verdict(results),
    }
