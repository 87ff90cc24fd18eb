"""Round 9b: vote never takes the plate net's province (nor a province and a red suffix both).

On dev the sure net's provinces and red suffixes were 27 of 27 right where PP-OCR was undecided,
but on the held-out seed 15 its provinces were 0 of 3 right (3 false reads) and on the 300 real
crops it rewrote 11 right 皖 plates (docs/benchmarks.md, plates, round 9b). Round 10 takes a red
suffix alone (test_plate_suffix_take.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.config import PlateSettings
from edge.plate_decoding import PlateCandidate
from edge.plate_net import CHARACTERS
from edge.plates import PlateReader
from tests.unit.edge.test_plate_net import _tiny_onnx


@pytest.mark.parametrize(
    ("text", "net_text"),
    [
        ("皖A40765", "陕A40765"),  # a real crop the take rewrote (province)
        ("新L6064领", "云L6064领"),  # held-out seed 15's false read (province)
        ("豫E35941", "蒙E3594警"),  # province and suffix both
    ],
)
def test_vote_keeps_pp_ocrs_text_where_the_sure_net_reads_another_head_or_suffix(
    tmp_path: Path, text: str, net_text: str
) -> None:
    path = tmp_path / "spells.onnx"
    _tiny_onnx(path, CHARACTERS, len(CHARACTERS), spells=net_text)  # each character at 0.99
    reader = PlateReader(PlateSettings(second_opinion="vote", second_opinion_weights=str(path)))
    crop = np.zeros((40, 130, 3), np.uint8)
    unsure = PlateCandidate(text, 0.713, (0.9,) * len(text))
    voted = reader._opinion(unsure, (crop,))
    assert (voted.text, voted.confidence) == (text, 0.713)
    assert voted.opinion == (net_text, 0.99)
