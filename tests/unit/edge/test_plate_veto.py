"""Round 9: a sure plate net that reads a letter where PP-OCR read a digit leaves it undecided."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge import plates
from edge.config import PlateSettings
from edge.plate_decoding import PlateCandidate
from edge.plate_net import CHARACTERS
from edge.plates import PlateReader, letter_for_digit
from tests.unit.edge.test_plate_net import _tiny_onnx


@pytest.mark.parametrize(
    ("text", "net_text", "vetoed"),
    [
        ("青N06Z61", "青N06Z6J", True),  # dev's false read: J read as 1
        ("云A06979", "云AQ6979", True),  # Q read as 0
        ("云A06979", "云AQ6Q79", True),  # two letters, every difference a digit for a letter
        ("青N06Z61", "青N06Z61", False),  # the same text
        ("青N06Z61", "豫N06Z6J", False),  # the province differs too: the rest is not the same
        ("青N06Z6J", "青N06Z61", False),  # a digit where PP-OCR read a letter
        ("青N06261", "青N06Z6J", True),  # Z for 2 and J for 1
        ("甘U75618", "甘U7561警", False),  # a red suffix, not a letter
        ("皖A12345", "皖A1234", False),  # another length
    ],
)
def test_letter_for_digit(text: str, net_text: str, vetoed: bool) -> None:
    assert letter_for_digit(text, net_text) is vetoed


def _reader(tmp_path: Path, spells: str, mode: str) -> PlateReader:
    path = tmp_path / "spells.onnx"
    _tiny_onnx(path, CHARACTERS, len(CHARACTERS), spells=spells)
    return PlateReader(PlateSettings(second_opinion=mode, second_opinion_weights=str(path)))


def test_vote_leaves_a_decided_digit_undecided_where_the_sure_net_reads_a_letter(
    tmp_path: Path,
) -> None:
    crop = np.zeros((40, 130, 3), np.uint8)
    decided = PlateCandidate("青N06Z61", 0.9951, (0.99,) * 7)
    vote = _reader(tmp_path, "青N06Z6J", "vote")
    vetoed = vote._opinion(decided, (crop,))
    assert vetoed.text == "青N06Z61"  # the text stays; only its confidence drops
    assert vetoed.confidence == plates.NEAR_TIE_CHANCE
    assert vetoed.opinion == ("青N06Z6J", 0.99)
    # Observe changes nothing.
    observe = _reader(tmp_path, "青N06Z6J", "observe")
    assert observe._opinion(decided, (crop,)).confidence == 0.9951


def test_vote_keeps_a_decided_reading_the_net_reads_otherwise_elsewhere(tmp_path: Path) -> None:
    crop = np.zeros((40, 130, 3), np.uint8)
    decided = PlateCandidate("青N06Z61", 0.9951, (0.99,) * 7)
    # The net's province differs too (round 8's net read 豫N06Z6J): no veto, as round 8 found a
    # veto on other glyphs cost far more right readings than it saved.
    assert _reader(tmp_path, "豫N06Z6J", "vote")._opinion(decided, (crop,)).confidence == 0.9951
    # A digit where PP-OCR read a letter: no veto either.
    letter = PlateCandidate("青N06Z6J", 0.9951, (0.99,) * 7)
    assert _reader(tmp_path, "青N06Z61", "vote")._opinion(letter, (crop,)).confidence == 0.9951
