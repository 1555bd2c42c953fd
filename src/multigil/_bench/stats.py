"""Robust summaries of repeated samples.

On a small, noisy machine the mean is dragged around by the odd slow round,
so every figure is a median, and its spread is half the interquartile range
(the ``±`` in the tables): half the width of the band that holds the middle
half of the samples. Min and max go to the JSON for whoever wants them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Summary", "summarize", "paired_ratios", "geomean"]


@dataclass(frozen=True)
class Summary:
    """Median and spread of a list of samples.

    Attributes
    ----------
    median : float
    spread : float
        Half the interquartile range; 0 with fewer than two samples.
    q1, q3, min, max : float
    n : int
        Number of samples.
    """

    median: float
    spread: float
    q1: float
    q3: float
    min: float
    max: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        """The fields as a plain dict, for JSON."""
        return {
            "median": self.median,
            "spread": self.spread,
            "q1": self.q1,
            "q3": self.q3,
            "min": self.min,
            "max": self.max,
            "n": self.n,
        }


def summarize(samples: Sequence[float]) -> Summary:
    """Summarize *samples* (at least one).

    Raises
    ------
    ValueError
        If *samples* is empty.
    """
    if not samples:
        raise ValueError("no samples to summarize")
    data = sorted(samples)
    med = statistics.median(data)
    if len(data) >= 2:
        # "inclusive" interpolates between the samples themselves, so the
        # quartiles of a handful of repeats stay within the observed range.
        q1, _, q3 = statistics.quantiles(data, n=4, method="inclusive")
    else:
        q1 = q3 = data[0]
    return Summary(med, (q3 - q1) / 2, q1, q3, data[0], data[-1], len(data))


def paired_ratios(base: Sequence[float], other: Sequence[float]) -> list[float]:
    """Per-round ratios ``base[i] / other[i]`` (a speed-up when both are times).

    Because the runner interleaves contenders round by round, sample *i* of
    every contender was taken at about the same moment; dividing within a
    round cancels much of the machine's drift, so the median of these ratios
    is steadier than a ratio of medians.
    """
    # strict=False: a contender stopped mid-run has fewer rounds than serial.
    return [b / o for b, o in zip(base, other, strict=False) if o > 0]


def geomean(values: Sequence[float]) -> float:
    """Geometric mean of positive *values* (the right mean for ratios); NaN if none."""
    vals = [v for v in values if v > 0]
    if not vals:
        return math.nan
    return math.exp(sum(math.log(v) for v in vals) / len(vals))
