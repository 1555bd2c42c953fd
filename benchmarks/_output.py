"""What the benchmarks share: the report and its samples, and this process's RSS."""

from __future__ import annotations

import json
from typing import Any


def finish(results: dict[str, Any], text: str, json_path: str | None) -> int:
    """Print the report; with a path, also write every sample there as JSON."""
    print(text)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def verdict(ok: bool, text: str) -> str:
    """One line of a report's targets: ``  [ok] text`` or ``  [MISS] text``."""
    return f"  [{'ok' if ok else 'MISS'}] {text}"


def rss_bytes() -> int:
    """The resident set size of this process, in bytes (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")
