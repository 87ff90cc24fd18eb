"""A plate reading's confidence as the chance it is right, fitted on generated dev scenes.

The decoder gives each character its best CTC score and its rival's (the best other character
its slot allows). A reading's raw score is its weakest character's (halved when the read passes
disagreed); that orders the candidate readings of one vehicle. The vehicle's best reading, when
its raw score is under the model's ``look_below`` (0.98), gets a second look (edge.plates: ten
altered copies of its crop read and voted). Its confidence then comes from a ``ConfidenceModel``
(edge.plate_confidence_fit, written by bench.plates_calibrate): a sign-constrained logistic
model on ``feature_vector`` (the plate core's weakest character and margin over its rival, the
views' agreement), mapped through a monotone step table (isotonic regression; each level the
lower end of its share right's Wilson interval, so a small clean block is not trusted as much
as a large one), fitted on dev seeds 1 and 4-8 out of fold, never on the test seeds 2 and 3. A
reading with no second look has the share of such dev readings right (its lower bound likewise).

The floor (contracts.exemptions.DEFAULT_PLATE_CONFIDENCE_FLOOR, 0.9) is unchanged: the fitted
levels around it are 0.71 and 0.99, and no dev reading at or above it was wrong (out of fold).
``calibrated`` (the step table ``CALIBRATION``, round 2's) still gives a candidate's provisional
confidence before the model. docs/benchmarks.md (plates in whole scenes) has the figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray

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


@dataclass(frozen=True, slots=True)
class ReadingFeatures:
    """What a vehicle's reading was made of: the first reading and its second look's vote."""

    first_weakest: float  # the first reading's weakest character (before any second look)
    first_mean: float  # its mean character score
    agreed: bool  # the read passes that ran read the same text
    looked: bool  # a second look ran (the first reading was unsure)
    vote: float  # the second look's score: its views' weakest characters summed, over VIEWS
    agree_share: float  # views that read the winning text, over VIEWS
    read_share: float  # views that read any plate at all, over VIEWS
    rival_share: float  # views that read the runner-up text, over VIEWS
    kept: bool  # the second look's text is the first reading's
    view_weakest: float  # the weakest of the winning text's characters averaged over its views
    view_mean: float  # the mean of those characters
    first_char: float  # the first character (the province, or W) averaged over the views
    last_char: float  # the last character averaged over the views
    rows: int  # 1, or 2 for a double-row plate
    height: int  # the crop's (or lower row's) height in pixels
    width: int  # its width
    contrast: float  # the grey crop's standard deviation
    char_scores: tuple[float, ...] = ()  # each character's score (averaged over the views)
    char_rivals: tuple[float, ...] = ()  # each one's best rival in its slot (averaged likewise)
    first_text: str = ""  # the first reading's text

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


FEATURE_NAMES: tuple[str, ...] = (
    "core_weakest",
    "core_margin",
    "agree_share",
    "rival_share",
    "kept",
    "all_agree",
)
"""The model's inputs, in order (``feature_vector``)."""

FEATURE_SIGNS: tuple[int, ...] = (1, 1, 1, -1, 1, 1)
"""The sign each input's weight must have (0: either): a higher score never makes a reading
less likely right, a stronger rival never more (bench.plates_calibrate fits with these)."""

RED_SUFFIXES = "挂学警港澳领"
"""The last characters the recogniser scores low even when it reads them right; 使 too."""


def _logit(value: float) -> float:
    clipped = min(max(value, 1e-4), 1 - 1e-4)
    return math.log(clipped / (1 - clipped))


def feature_vector(features: ReadingFeatures, text: str) -> NDArray[np.float64]:
    """A reading's model inputs (FEATURE_NAMES), from its features and its text.

    The plate's core is its province (or WJ), letters and digits: a red suffix (警, 领...) and
    使 are left out, as the recogniser scores them low even when right and, on dev, a wrong
    reading was wrong in its core. Per core character, its score (averaged over the second
    look's views that read the winning text) and its margin over the best other character its
    slot allows; the weakest of each counts. Then the views: the share that read the winning
    text, the share that read the runner-up, whether the first reading was that text, and
    whether every view read it.
    """
    scores = features.char_scores or (0.0,) * len(text)
    rivals = features.char_rivals or (0.0,) * len(text)
    core = [
        (score, score - rival)
        for char, score, rival in zip(text, scores, rivals, strict=False)
        if char not in RED_SUFFIXES and char != "使"
    ]
    values = (
        _logit(min((score for score, _ in core), default=0.0)),
        min((margin for _, margin in core), default=0.0),
        features.agree_share,
        features.rival_share,
        float(features.kept),
        float(features.agree_share >= 1.0),
    )
    return np.asarray(values, dtype=np.float64)


OUTSIDE = 0.5
"""The most a reading from a crop smaller than the dev readings' is worth: the calibration does
not know it (on a 60 px wide plate a misread province was read by every view)."""


@dataclass(frozen=True, slots=True)
class ConfidenceModel:
    """A reading's chance of being right, from its features.

    A reading that needed no second look (its raw score at or over ``look_below``) has the
    share of such dev readings that were right (Laplace-smoothed). Any other goes through a
    logistic model on ``feature_vector`` (inputs standardised by ``mean`` and ``scale``), whose
    output ``table`` maps to the chance right: a monotone step table fitted on the dev
    readings' out-of-fold outputs (each dev seed scored by a model fitted on the others).
    A reading from a crop narrower than any dev reading's (``min_width``, or ``min_row_width``
    for a double-row plate's rows) is outside what was fitted: its chance is at most OUTSIDE.
    """

    look_below: float
    sure: float
    min_width: int
    min_row_width: int
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    table: tuple[tuple[float, float], ...]

    def output(self, features: ReadingFeatures, text: str) -> float:
        """The logistic model's output for a reading that had a second look."""
        z = (feature_vector(features, text) - np.asarray(self.mean)) / np.asarray(self.scale)
        logit = float(z @ np.asarray(self.weights)) + self.bias
        return 1.0 / (1.0 + math.exp(-min(max(logit, -50.0), 50.0)))

    def chance(self, features: ReadingFeatures, text: str) -> float:
        """The chance the reading is right."""
        chance = self.sure if not features.looked else step(self.table, self.output(features, text))
        narrowest = self.min_width if features.rows == 1 else self.min_row_width
        return chance if features.width >= narrowest else min(chance, OUTSIDE)


def step(table: Sequence[tuple[float, float]], value: float) -> float:
    """A step table's level at ``value``: each level holds from its start up to the next."""
    level = 0.0
    for start, chance in table:
        if value >= start:
            level = chance
    return level


def raw_score(char_confidences: Sequence[float], agreed: bool = True) -> float:
    """The weakest character's score, halved when the read passes disagreed; 0 for none."""
    weakest = float(min(char_confidences, default=0.0))
    return weakest if agreed else weakest * DISAGREEMENT


def calibrated(score: float) -> float:
    """The chance a reading with this score is right (dev calibration)."""
    return step(CALIBRATION, score)


def wilson_lower(right: float, count: float, z: float) -> float:
    """The lower end of the Wilson score interval for ``right`` of ``count`` (one-sided z)."""
    if count <= 0:
        return 0.0
    share = right / count
    centre = share + z * z / (2 * count)
    spread = z * math.sqrt(share * (1 - share) / count + z * z / (4 * count * count))
    return max(0.0, (centre - spread) / (1 + z * z / count))


def fit_calibration(
    scores: Sequence[float], right: Sequence[bool], bound_z: float | None = None
) -> tuple[tuple[float, float], ...]:
    """A monotone table (raw score, chance right) from labelled readings.

    Pooled adjacent violators over the readings sorted by raw score; each pooled block gives
    its first and last score at the block's share right (Laplace-smoothed, kept monotone);
    a raw score of 0 is 0. With ``bound_z`` a block's level is the lower end of its share's
    Wilson interval instead: a block of few readings is not trusted as much as a large one.
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
        share = (
            (right_sum + 1) / (count + 2)
            if bound_z is None
            else wilson_lower(right_sum, count, bound_z)
        )
        level = max(level, round(share, 4))
        for x in (round(first, 4), round(last, 4)):
            if x > 0:
                table[x] = level
    table.setdefault(1.0, level)
    return tuple(sorted(table.items()))


__all__ = [
    "CALIBRATION",
    "FEATURE_NAMES",
    "FEATURE_SIGNS",
    "OUTSIDE",
    "ConfidenceModel",
    "ReadingFeatures",
    "calibrated",
    "feature_vector",
    "fit_calibration",
    "raw_score",
    "step",
    "wilson_lower",
]
