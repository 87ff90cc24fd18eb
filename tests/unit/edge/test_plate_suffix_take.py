"""Round 10: with vote, an undecided reading the sure net reads the same but for a red suffix
last (挂学警港澳领) takes the net's suffix, worth SUFFIX_CHANCE; nothing else of the net's is
taken. And the net's agreement decides a near tie of PP-OCR's too.

On dev (seeds 1, 4-11 and 17-21) every such take at the net's weakest character SUFFIX_SURE or
more was right, 36 of 36, and the 17 near ties the sure net agreed with were right
(docs/benchmarks.md, plates, round 10); round 9b's provinces were wrong on held-out and on real
crops, so a province is never taken (test_plate_head_take.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contracts.exemptions import DEFAULT_PLATE_CONFIDENCE_FLOOR
from edge import plates
from edge.config import PlateSettings
from edge.plate_confidence import ReadingFeatures
from edge.plate_decoding import PlateCandidate
from edge.plate_net import CHARACTERS
from edge.plates import PlateReader
from tests.unit.edge.test_plate_net import _tiny_onnx

CROP = np.zeros((40, 130, 3), np.uint8)


def _reader(tmp_path: Path, spells: str, mode: str = "vote", score: float = 0.99) -> PlateReader:
    path = tmp_path / "spells.onnx"
    _tiny_onnx(path, CHARACTERS, len(CHARACTERS), spells=spells, score=score)
    return PlateReader(PlateSettings(second_opinion=mode, second_opinion_weights=str(path)))


@pytest.mark.parametrize(
    ("text", "net_text", "taken"),
    [
        ("浙Y46855", "浙Y4685领", True),  # a 领 read as a digit
        ("吉V2985T", "吉V2985警", True),  # a 警 read as a letter
        ("粤Z23122", "粤Z2312澳", True),  # an 澳 read as a digit
        ("京A1234警", "京A1234领", False),  # one red suffix for another: not taken
        ("浙Y4685领", "浙Y46855", False),  # the net's last is no red suffix
        ("浙Y46855", "浙Y4685A", False),  # a letter, not a red suffix
        ("豫E35941", "蒙E3594警", False),  # the province differs too
        ("新V0263领", "新CV0263", False),  # shifted, not the last alone
        ("浙Y4685领", "浙Y4685领", False),  # the same text
        ("京V21785", "京V2178领8", False),  # another length
    ],
)
def test_red_suffix(text: str, net_text: str, taken: bool) -> None:
    assert plates.red_suffix(text, net_text) is taken


def test_vote_takes_the_sure_nets_red_suffix_for_an_undecided_reading(tmp_path: Path) -> None:
    reader = _reader(tmp_path, "浙Y4685领")
    unsure = PlateCandidate("浙Y46855", 0.713, (0.9,) * 7)
    taken = reader._opinion(unsure, (CROP,))
    assert taken.text == "浙Y4685领"
    assert taken.confidence == plates.SUFFIX_CHANCE
    assert taken.confidence >= DEFAULT_PLATE_CONFIDENCE_FLOOR  # decided
    assert taken.char_confidences[:-1] == (0.9,) * 6  # PP-OCR's for the rest of the plate
    assert taken.opinion == ("浙Y4685领", 0.99)


def test_a_decided_reading_keeps_its_text(tmp_path: Path) -> None:
    reader = _reader(tmp_path, "浙Y4685领")
    decided = PlateCandidate("浙Y46855", 0.992, (0.99,) * 7)
    assert reader._opinion(decided, (CROP,)).text == "浙Y46855"


def test_an_unsure_net_is_not_taken(tmp_path: Path) -> None:
    score = plates.SUFFIX_SURE - 0.1
    reader = _reader(tmp_path, "浙Y4685领", score=score)
    unsure = PlateCandidate("浙Y46855", 0.713, (0.9,) * 7)
    kept = reader._opinion(unsure, (CROP,))
    assert (kept.text, kept.confidence) == ("浙Y46855", 0.713)
    assert kept.opinion is not None
    assert kept.opinion[0] == "浙Y4685领"
    assert kept.opinion[1] < plates.SUFFIX_SURE


def test_observe_takes_nothing(tmp_path: Path) -> None:
    reader = _reader(tmp_path, "浙Y4685领", mode="observe")
    unsure = PlateCandidate("浙Y46855", 0.713, (0.9,) * 7)
    kept = reader._opinion(unsure, (CROP,))
    assert (kept.text, kept.confidence) == ("浙Y46855", 0.713)


def test_the_sure_nets_agreement_decides_a_near_tie(tmp_path: Path) -> None:
    """Round 10: a reading resting on a near tie (its 0 hardly over a D), undecided alone, is
    decided when the sure net reads the same text (round 9b left it undecided)."""
    scores = (0.99, 0.99, 0.99, 0.55, 0.99, 0.99, 0.99)
    rivals = (0.0, 0.0, 0.0, 0.45, 0.0, 0.0, 0.0)
    features = ReadingFeatures(
        first_weakest=0.55,
        first_mean=0.93,
        agreed=True,
        looked=True,
        vote=0.5,
        agree_share=1.0,
        read_share=1.0,
        rival_share=0.0,
        kept=True,
        view_weakest=0.55,
        view_mean=0.93,
        first_char=0.99,
        last_char=0.99,
        rows=1,
        height=40,
        width=130,
        contrast=50.0,
        char_scores=scores,
        char_rivals=rivals,
    )
    assert plates.weakest_margin("皖A10345", scores, rivals) < plates.NEAR_TIE  # a near tie
    tied = PlateCandidate("皖A10345", plates.NEAR_TIE_CHANCE, scores, features=features)
    decided = _reader(tmp_path, "皖A10345")._opinion(tied, (CROP,))
    assert decided.text == "皖A10345"
    assert decided.confidence == plates.AGREE_CHANCE >= DEFAULT_PLATE_CONFIDENCE_FLOOR
    # The net reading another text leaves the tie undecided.
    (tmp_path / "other").mkdir()
    other = _reader(tmp_path / "other", "皖A1D345")._opinion(tied, (CROP,))
    assert other.confidence == plates.NEAR_TIE_CHANCE
