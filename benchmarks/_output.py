"""What the Dask and joblib benchmarks do with their results."""

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
