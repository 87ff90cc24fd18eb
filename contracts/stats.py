"""Summary statistics every layer reports with (the console, loadgen, the benchmarks, eval)."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` 0..1) of ``values``; 0 for none.

    The rank is ceil(share x n), with a hair of tolerance so that float noise (0.9 x 70 is
    63.00000000000001) does not push it one rank up.
    """
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]
