"""A plate reading's confidence as the chance it is right, calibrated on generated scenes.

The decoder gives each character its best CTC score. A reading is as weak as its weakest
character, so the raw score is the weakest character's (halved when the read passes disagreed).
A reading whose raw score is under SECOND_LOOK_BELOW gets a second look (edge.plates: ten altered
copies of its crop read and voted) and scores the share of them that read it, weighted by their
weakest characters (a red suffix such as 警 at its square root). ``calibrated`` maps a score
through a monotone step table fitted (isotonic regression, pooled adjacent violators,
Laplace-smoothed) on the dev scenes of bench/plates_frames.py (seed 1: generated scenes, see
edge/plate_scenes.py), never on the test scenes. The floor
(contracts.exemptions.DEFAULT_PLATE_CONFIDENCE_FLOOR, 0.9) was chosen on the dev readings before
the second look and kept: with it no dev reading at or above the floor is wrong; the levels
around it are 0.793 and 0.993, so any floor between gives the same dev decisions.
docs/benchmarks.md (plates in whole scenes) has the dev and test figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# (score, chance right): a step function, each level holding from its score up to the next.
# Fitted on the 202 readings of 346 vehicles in the 180 dev scenes (seed 1), 2026-12-04, with the
# second look: a reading's score is its raw score at or over SECOND_LOOK_BELOW, else the second
# look's. Every dev reading scoring 0.7417 or more was right (the best wrong one: 0.7243).
CALIBRATION: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (0.0001, 0.0909),
    (0.0434, 0.5),
    (0.1277, 0.75),
    (0.4095, 0.7931),
    (0.7417, 0.9934),
)


DISAGREEMENT = 0.5
"""A reading the read passes did not agree on (a second look at another width read other text)
keeps this share of its raw score: on dev, confident single-pass misreads were mostly these."""

SECOND_LOOK_BELOW = 0.96
"""A reading whose raw score is under this gets a second look (edge.plates), and its score is
then the second look's: the views' agreement."""


def raw_score(char_confidences: Sequence[float], agreed: bool = True) -> float:
    """The weakest character's score, halved when the read passes disagreed; 0 for none."""
    weakest = float(min(char_confidences, default=0.0))
    return weakest if agreed else weakest * DISAGREEMENT


def calibrated(score: float) -> float:
    """The chance a reading with this score is right (dev calibration)."""
    level = 0.0
    for start, chance in CALIBRATION:
        if score >= start:
            level = chance
    return level


def fit_calibration(
    scores: Sequence[float], right: Sequence[bool]
) -> tuple[tuple[float, float], ...]:
    """A monotone table (raw score, chance right) from labelled readings.

    Pooled adjacent violators over the readings sorted by raw score; each pooled block gives
    its first and last score at the block's share right (Laplace-smoothed, kept monotone);
    a raw score of 0 is 0.
    """
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")
    xs = np.asarray(scores, dtype=np.float64)[order]
    ys = np.asarray(right, dtype=np.float64)[order]
    blocks: list[list[float]] = []  # [right, count, first score, last score]
    for x, y in zip(xs, ys, strict=True):
        blocks.append([float(y), 1.0, float(x), float(x)])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            right_sum, count, _, last = blocks.pop()
            blocks[-1][0] += right_sum
            blocks[-1][1] += count
            blocks[-1][3] = last
    table: dict[float, float] = {0.0: 0.0}
    level = 0.0
    for right_sum, count, first, last in blocks:
        # Laplace's rule: 40 right of 40 is 41/42, not a certainty.
        level = max(level, round((right_sum + 1) / (count + 2), 4))
        for x in (round(first, 4), round(last, 4)):
            if x > 0:
                table[x] = level
    table.setdefault(1.0, level)
    return tuple(sorted(table.items()))


__all__ = ["CALIBRATION", "SECOND_LOOK_BELOW", "calibrated", "fit_calibration", "raw_score"]
