"""Round 9b: where PP-OCR is undecided and the sure plate net reads the same plate but for the
province or the red suffix, vote takes the net's text at HEAD_CHANCE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contracts.exemptions import DEFAULT_PLATE_CONFIDENCE_FLOOR
from edge import plates
from edge.config import PlateSettings
from edge.plate_decoding import PlateCandidate
from edge.plate_net import CHARACTERS
from edge.plate_scenes import render_plate
from edge.plates import PlateReader, head_or_suffix
from tests.unit.edge.test_plate_net import _tiny_onnx, needs_weights


@pytest.mark.parametrize(
    ("text", "net_text", "taken"),
    [
        ("浙Y46855", "浙Y4685领", True),  # dev: the red suffix read as a digit
        ("粤Z2774A", "粤Z2774澳", True),  # a red suffix read as a letter
        ("皖UF73398", "藏UF73398", True),  # dev: a green plate's province
        ("豫E3594警", "蒙E3594警", True),  # a province, the suffix the same
        ("豫E35941", "蒙E3594警", True),  # province and suffix both
        ("浙Y46855", "浙Y46855", False),  # the same text: agreement, not a take
        ("浙Y46855", "浙Y46865", False),  # a digit elsewhere
        ("浙Y46855", "浙Y4686领", False),  # a digit elsewhere and the suffix
        ("粤Z2774澳", "粤Z27748", False),  # the net drops a red suffix: not taken
        ("新C1756警", "使C1756警", False),  # dev: 使 is no province's head
        ("陕Q052648", "使052648", False),  # a 使 head: another length, not taken
        ("新A42304", "WJ晋42304", False),  # a WJ head: not taken
        ("WJ0139J", "WJ豫01391", False),  # a WJ plate's province: not taken
        ("浙Y4685", "浙Y4685领", False),  # another length
    ],
)
def test_head_or_suffix(text: str, net_text: str, taken: bool) -> None:
    assert head_or_suffix(text, net_text) is taken


def _reader(tmp_path: Path, spells: str, mode: str) -> PlateReader:
    path = tmp_path / "spells.onnx"
    _tiny_onnx(path, CHARACTERS, len(CHARACTERS), spells=spells)  # each character at 0.99
    return PlateReader(PlateSettings(second_opinion=mode, second_opinion_weights=str(path)))


def test_vote_takes_the_sure_nets_red_suffix_for_an_undecided_reading(tmp_path: Path) -> None:
    crop = np.zeros((40, 130, 3), np.uint8)
    unsure = PlateCandidate("浙Y46855", 0.713, (0.9,) * 7)
    taken = _reader(tmp_path, "浙Y4685领", "vote")._opinion(unsure, (crop,))
    assert taken.text == "浙Y4685领"
    assert taken.confidence == plates.HEAD_CHANCE >= DEFAULT_PLATE_CONFIDENCE_FLOOR
    assert taken.char_confidences == (0.99,) * 7
    assert taken.opinion == ("浙Y4685领", 0.99)
    # Observe changes nothing.
    seen = _reader(tmp_path, "浙Y4685领", "observe")._opinion(unsure, (crop,))
    assert (seen.text, seen.confidence) == ("浙Y46855", 0.713)


def test_vote_never_rewrites_a_decided_reading_or_a_digit_elsewhere(tmp_path: Path) -> None:
    crop = np.zeros((40, 130, 3), np.uint8)
    decided = PlateCandidate("浙Y46855", 0.95, (0.99,) * 7)
    kept = _reader(tmp_path, "浙Y4685领", "vote")._opinion(decided, (crop,))
    assert (kept.text, kept.confidence) == ("浙Y46855", 0.95)
    unsure = PlateCandidate("浙Y46855", 0.713, (0.9,) * 7)
    other = _reader(tmp_path, "浙Y4686领", "vote")._opinion(unsure, (crop,))
    assert (other.text, other.confidence) == ("浙Y46855", 0.713)


@needs_weights
def test_with_vote_the_built_net_takes_a_lost_red_suffix() -> None:
    """The built net (round 9b's: 27 of 27 such dev readings right at weakest 0.7) reads a
    rendered 澳 plate; PP-OCR's undecided reading with an A for 澳 becomes the net's."""
    import cv2

    reader = PlateReader(PlateSettings(second_opinion="vote"))
    plate = render_plate("粤Z2774澳", "hk_macau")
    size = (160, round(160 * plate.shape[0] / plate.shape[1]))
    crop = np.asarray(cv2.resize(plate, size), dtype=np.uint8)
    unsure = PlateCandidate("粤Z2774A", 0.713, (0.9,) * 7)
    taken = reader._opinion(unsure, (crop,))
    assert taken.opinion is not None
    assert taken.opinion[1] >= plates.HEAD_SURE
    assert (taken.text, taken.confidence) == ("粤Z2774澳", plates.HEAD_CHANCE)
