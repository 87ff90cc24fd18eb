"""The plate confidence model: its inputs, its fitted levels and the fit's sign rule."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bench.plates_calibrate import fit_signed, predict, scenes
from contracts.exemptions import DEFAULT_PLATE_CONFIDENCE_FLOOR
from edge.plate_confidence import (
    FEATURE_NAMES,
    FEATURE_SIGNS,
    OUTSIDE,
    ReadingFeatures,
    feature_vector,
    fit_calibration,
    wilson_lower,
)
from edge.plate_confidence_fit import FITTED
from edge.plate_decoding import PlateDecoder
from tests.unit.edge.test_plates import CHARSET, frames, spelled

FLOOR = DEFAULT_PLATE_CONFIDENCE_FLOOR


def looked(
    scores: tuple[float, ...],
    rivals: tuple[float, ...] | None = None,
    agree: float = 1.0,
    rival_share: float = 0.0,
    kept: bool = True,
    width: int = 150,
    rows: int = 1,
) -> ReadingFeatures:
    """A reading that had a second look, with its views' per-character scores."""
    return ReadingFeatures(
        first_weakest=min(scores),
        first_mean=float(np.mean(scores)),
        agreed=True,
        looked=True,
        vote=min(scores) * agree,
        agree_share=agree,
        read_share=1.0,
        rival_share=rival_share,
        kept=kept,
        view_weakest=min(scores),
        view_mean=float(np.mean(scores)),
        first_char=scores[0],
        last_char=scores[-1],
        rows=rows,
        height=width // 3,
        width=width,
        contrast=50.0,
        char_scores=scores,
        char_rivals=rivals if rivals is not None else (0.0,) * len(scores),
    )


def test_a_red_suffix_and_embassy_mark_are_not_the_plate_core() -> None:
    """警 and 使 score low even when right: the core's weakest character leaves them out."""
    police = feature_vector(looked((0.99, 0.99, 0.99, 0.99, 0.99, 0.99, 0.05)), "贵E8804警")
    ordinary = feature_vector(looked((0.99, 0.99, 0.99, 0.99, 0.99, 0.99, 0.05)), "贵E88041")
    core = FEATURE_NAMES.index("core_weakest")
    assert police[core] > ordinary[core]
    embassy = feature_vector(looked((0.05, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99)), "使123456")
    assert embassy[core] == police[core]


def test_a_rival_close_behind_a_character_lowers_the_chance() -> None:
    """A province read 0.8 with another province at 0.15 beside it is less sure than alone."""
    scores = (0.8, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99)
    alone = FITTED.chance(looked(scores), "豫E35941")
    crowded = FITTED.chance(looked(scores, (0.15, 0, 0, 0, 0, 0, 0)), "豫E35941")
    assert crowded <= alone
    assert FITTED.output(looked(scores, (0.15, 0, 0, 0, 0, 0, 0)), "豫E35941") < FITTED.output(
        looked(scores), "豫E35941"
    )


def test_views_that_disagree_lower_the_chance() -> None:
    scores = (0.9, 0.99, 0.99, 0.99, 0.99, 0.99, 0.9)
    agreed = FITTED.output(looked(scores), "川A12345")
    split = FITTED.output(looked(scores, agree=0.5, rival_share=0.4, kept=False), "川A12345")
    assert split < agreed


def test_the_fitted_model_is_a_calibration_with_signed_weights() -> None:
    """Every level is a chance, in order; the top level and a reading with no second look are
    decided at the floor; each weight has the sign the fit was held to."""
    levels = [level for _, level in FITTED.table]
    assert levels == sorted(levels)
    assert all(0.0 <= level < 1.0 for level in levels)
    assert FITTED.sure >= FLOOR
    assert levels[-1] >= FLOOR
    assert 0.0 < FITTED.look_below <= 1.0
    assert len(FITTED.weights) == len(FEATURE_NAMES) == len(FEATURE_SIGNS)
    assert all(
        sign * weight >= 0 for sign, weight in zip(FEATURE_SIGNS, FITTED.weights, strict=True)
    )


def test_a_plate_narrower_than_dev_plates_is_never_decided() -> None:
    sure = replace(looked((0.99,) * 7), looked=False)
    assert FITTED.chance(sure, "川A12345") == FITTED.sure
    small = replace(sure, width=FITTED.min_width - 1)
    assert FITTED.chance(small, "川A12345") <= OUTSIDE < FLOOR
    lower_row = replace(sure, rows=2, width=FITTED.min_row_width)
    assert FITTED.chance(lower_row, "川A12345") == FITTED.sure


def test_the_decoder_gives_each_character_its_rival(decoder: PlateDecoder) -> None:
    """Beside 皖 at 0.7, 豫 at 0.2 in the same step is its rival; a clean character has none."""
    steps = spelled("皖A12345", sure=0.95)
    steps[0] = {"皖": 0.7, "豫": 0.2}
    candidate = decoder.decode(frames(*steps))
    assert candidate is not None
    assert candidate.text == "皖A12345"
    assert len(candidate.rivals) == len(candidate.text)
    assert candidate.rivals[0] == pytest.approx(0.2, abs=1e-3)
    assert max(candidate.rivals[1:]) < 0.01


@pytest.fixture(scope="module")
def decoder() -> PlateDecoder:
    return PlateDecoder(CHARSET)


def test_the_fit_keeps_each_weight_to_its_sign() -> None:
    """An input that would get the wrong sign (here a rival share that, by chance, goes with
    right readings) is dropped, not trusted."""
    rng = np.random.default_rng(0)
    count = 400
    x = rng.normal(size=(count, len(FEATURE_NAMES)))
    right = (x[:, 0] + 0.5 * x[:, 3] + rng.normal(scale=0.5, size=count)) > 0
    mean, scale, weights, bias = fit_signed(x, right.astype(np.float64), 1.0)
    signs = np.asarray(FEATURE_SIGNS)
    assert np.all(signs * weights >= 0)
    assert weights[FEATURE_NAMES.index("rival_share")] == 0.0
    assert weights[0] > 0
    chances = predict((mean, scale, weights, bias), x)
    assert chances[right].mean() > chances[~right].mean()


def test_wilson_levels_trust_many_clean_readings_more_than_few() -> None:
    assert wilson_lower(0, 0, 1.645) == 0.0
    assert wilson_lower(20, 20, 1.645) < wilson_lower(500, 500, 1.645) < 1.0
    assert wilson_lower(29, 30, 1.645) < FLOOR  # one wrong in thirty: not decided at 0.9
    table = fit_calibration([0.1, 0.2, 0.9, 0.95], [False, True, True, True], bound_z=1.645)
    assert [level for _, level in table] == sorted(level for _, level in table)


def test_scenes_count_a_decided_wrong_reading_as_a_false_read() -> None:
    rows = [
        {"scene": "a.jpg", "label": "川A12345", "text": "川A12345", "right": True},
        {"scene": "b.jpg", "label": "川B12345", "text": "豫B12345", "right": False},
        {"scene": "c.jpg", "label": "川C12345", "text": "川C12345", "right": True},
    ]
    tally = scenes(rows, [0.99, 0.95, 0.5], FLOOR)
    assert (tally["exact"], tally["false_read"], tally["miss"]) == (1, 1, 1)
    assert (tally["right_below"], tally["wrong_at_or_above"]) == (1, 1)
