"""Near ties and crowded rows: a reading that rests on one is not decided (plates, round 6).

The rival rule: a core position whose character scores hardly more than the best other one the
plate's format allows there (U or 1 in a letter-or-digit slot) is a near tie. The crowded rule:
a row in which the recogniser saw one character more than the reading holds (a U seen as two
strokes, 1 and 1, in a double-row plate's five-character bottom row, folded into one 1 by the
plate-constrained decoding: held-out seed 10's false read 桂V109A8 for 桂VU09A8).
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from contracts.exemptions import DEFAULT_PLATE_CONFIDENCE_FLOOR
from edge.config import PlateSettings
from edge.detections import Image
from edge.plate_confidence_fit import FITTED
from edge.plate_decoding import TAIL_LAYOUT, PlateDecoder
from edge.plate_scenes import render_plate
from edge.plates import (
    CROWDED,
    NEAR_TIE,
    NEAR_TIE_CHANCE,
    PlateReader,
    surplus,
    weakest_margin,
)
from tests.unit.edge.test_plates import CHARSET, frames, spelled

FLOOR = DEFAULT_PLATE_CONFIDENCE_FLOOR


@pytest.fixture(scope="module")
def decoder() -> PlateDecoder:
    return PlateDecoder(CHARSET)


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader(PlateSettings())


@pytest.fixture(scope="module")
def unruled() -> PlateReader:
    """The reader before round 6: neither rule (a margin never under -inf, a surplus never 2)."""
    return PlateReader(PlateSettings(), near_tie=float("-inf"), crowded=2.0)


def test_the_rules_are_on_and_cap_under_the_floor() -> None:
    assert 0.0 < CROWDED <= 1.0
    assert NEAR_TIE > 0.0
    assert NEAR_TIE_CHANCE < FLOOR


def test_surplus_finds_the_character_a_row_had_no_room_for(decoder: PlateDecoder) -> None:
    """A U seen as two strokes: 1 at 0.38, a blank, 1 at 0.78, then 09A8, in a 5-character row.

    The plate-constrained decoding keeps one 1; the row held two characters there up to 0.35
    (the highest of the thresholds tried at or under 0.38)."""
    steps = [{"1": 0.38}, {}, {"1": 0.78}, {}, *spelled("09A8")]
    read = decoder.decode(frames(*steps), TAIL_LAYOUT)
    assert read is not None
    assert read.text == "109A8"
    assert surplus(*decoder.scores(frames(*steps)), len(read.text)) == pytest.approx(0.35)
    clean = frames(*spelled("U09A8"))
    assert surplus(*decoder.scores(clean), 5) == 0.0
    # A character held over several steps is one character, not one a step.
    held = frames({"U": 0.9}, {"U": 0.95}, {"U": 0.9}, {}, *spelled("09A8"))
    assert surplus(*decoder.scores(held), 5) == 0.0


def test_a_margin_is_the_core_position_nearest_its_rival() -> None:
    scores = (0.99, 0.98, 0.90, 0.97, 0.99, 0.99, 0.99)
    rivals = (0.0, 0.01, 0.55, 0.02, 0.0, 0.0, 0.0)
    assert weakest_margin("川A1U345", scores, rivals) == pytest.approx(0.35)
    # A red suffix is not in the core: its low score is no tie.
    assert weakest_margin("川A1234警", (0.99,) * 6 + (0.05,), (0.0,) * 6 + (0.04,)) > 0.9
    assert weakest_margin("川A12345", scores, ()) == 1.0


def _double_row(text: str, width: int, extra_first_glyph: bool) -> tuple[Image, Image]:
    """A GENERATED yellow double-row plate's two rows at ``width`` pixels; with
    ``extra_first_glyph`` the bottom row's first glyph drawn twice (six characters in five)."""
    plate = render_plate(text, "yellow_double")
    upper, lower = plate[:90], plate[80:215]
    if extra_first_glyph:
        lower = np.concatenate([lower[:, :20], lower[:, 20:100], lower[:, 20:]], axis=1)
    scale = width / plate.shape[1]

    def shrink(row: Image) -> Image:
        size = (round(row.shape[1] * scale), round(row.shape[0] * scale))
        return np.asarray(cv2.resize(row, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)

    return shrink(upper), shrink(lower)


def test_a_crowded_row_is_not_decided(reader: PlateReader, unruled: PlateReader) -> None:
    """Six characters in a double-row plate's bottom row (京A 335871): the real recogniser sees
    six, the decoding keeps five, and the reading is no plate on it. Before round 6 it was
    decided (the test fails with the rule off); the same plate drawn right stays decided."""
    crowded = _double_row("京A35871", 150, extra_first_glyph=True)
    before = unruled.read_rows(*crowded)
    assert before is not None
    assert before.text != "京A35871"
    assert before.confidence >= FLOOR  # the false read the rule is for
    after = reader.read_rows(*crowded)
    assert after is not None
    assert after.text == before.text
    assert after.confidence <= NEAR_TIE_CHANCE < FLOOR
    clean = reader.read_rows(*_double_row("京A35871", 150, extra_first_glyph=False))
    assert clean is not None
    assert clean.text == "京A35871"
    assert clean.confidence >= FLOOR


def _blend(first: str, second: str, share: float, width: int) -> Image:
    """A GENERATED blue plate drawn as ``first`` and ``second`` at once (``share`` of the
    second), at ``width`` pixels: where they differ, a glyph between two characters."""
    a = render_plate(first, "blue").astype(np.float32)
    b = render_plate(second, "blue").astype(np.float32)
    plate = np.clip(a * (1 - share) + b * share, 0, 255).astype(np.uint8)
    size = (width, round(plate.shape[0] * width / plate.shape[1]))
    return np.asarray(cv2.resize(plate, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def test_a_near_tie_is_not_decided_even_by_a_model_that_trusts_it() -> None:
    """A D drawn 60 % over a Q (京Q0D521 / 京Q0Q521): the real recogniser reads the fourth
    position with its rival close behind. The fitted model already leaves it undecided; a model
    that trusts every reading (each level 0.99) would decide it, the near-tie rule does not."""
    trusting = replace(FITTED, sure=0.99, table=((0.0, 0.99),))
    crop = _blend("京Q0D521", "京Q0Q521", 0.4, 160)
    unruled = PlateReader(PlateSettings(), trusting, near_tie=float("-inf"), crowded=2.0)
    before = unruled.read_plate(crop)
    assert before is not None
    assert before.features is not None
    margin = weakest_margin(before.text, before.features.char_scores, before.features.char_rivals)
    assert margin < NEAR_TIE
    assert before.confidence >= FLOOR
    after = PlateReader(PlateSettings(), trusting).read_plate(crop)
    assert after is not None
    assert after.text == before.text
    assert after.confidence <= NEAR_TIE_CHANCE < FLOOR
    fitted = PlateReader(PlateSettings()).read_plate(crop)
    assert fitted is not None
    assert fitted.confidence < FLOOR
    # A clean 京Q0D521 is no tie: decided by the fitted reader with the rule on.
    clean = PlateReader(PlateSettings()).read_plate(_blend("京Q0D521", "京Q0Q521", 0.0, 160))
    assert clean is not None
    assert (clean.text, clean.confidence >= FLOOR) == ("京Q0D521", True)


def test_the_surplus_costs_no_recogniser_run_on_a_sure_crop(reader: PlateReader) -> None:
    """The final reading's rows had their first pass already: ``_surplus`` reuses its scores."""
    crop = render_plate("粤Z2312澳", "hk_macau")
    calls: list[int] = []
    inner = reader._recogniser

    class Counting:
        characters = inner.characters

        def __call__(self, batch: np.ndarray) -> np.ndarray:
            calls.append(1)
            return inner(batch)

    counting = PlateReader(PlateSettings())
    counting._recogniser = Counting()
    read = counting.read_plate(crop)
    assert read is not None
    assert read.text == "粤Z2312澳"
    assert len(calls) == 1
