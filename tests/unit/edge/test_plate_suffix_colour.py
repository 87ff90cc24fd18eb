"""Round 12: an undecided reading whose red suffix the plate's colour confirms is decided on its
core (a 警 plate is white; 领, 港 and 澳 plates are black)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge import plates
from edge.config import PlateSettings
from edge.detections import Image
from edge.plate_colour import plate_colour
from edge.plate_decoding import PlateCandidate
from edge.plate_scenes import PlateStyle, render_plate
from edge.plates import PlateReader

# The rule's constants are reached through the module (plates.SUFFIX_COLOUR_CHANCE...), so that
# on a tree without them only these tests fail. The behaviour tests hand a reading to
# PlateReader.settle, the reader's last steps, as bench.plates_calibrate's score step does.


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader(PlateSettings())


def _scene_like(plate: Image, width: int = 150) -> Image:
    """A plate as a scene shows it: small, darker, a little blurred."""
    height = round(width * plate.shape[0] / plate.shape[1])
    small = cv2.resize(plate, (width, height), interpolation=cv2.INTER_AREA)
    dim = cv2.convertScaleAbs(small, alpha=0.8, beta=0)
    return np.asarray(cv2.GaussianBlur(dim, (3, 3), 0), dtype=np.uint8)


@pytest.mark.parametrize(
    ("text", "style", "colour"),
    [
        ("皖A12345", "blue", "blue"),
        ("皖AD12345", "green", "green"),
        ("皖A12345", "yellow", "yellow"),
        ("皖A1234警", "police", "white"),
        ("WJ皖12345", "armed_police", "white"),
        ("粤Z1234港", "hk_macau", "black"),
        ("使123456", "embassy", "black"),
        ("皖A1234领", "consulate", "black"),
    ],
)
def test_plate_colour_of_each_style(text: str, style: PlateStyle, colour: str) -> None:
    assert plate_colour(_scene_like(render_plate(text, style))) == colour


# Dev's 蒙J5203警 (seed 1): the core read surely, the 警 unsure, the views split on it.
POLICE = (0.86, 1.0, 1.0, 1.0, 1.0, 1.0, 0.86)


def test_an_undecided_suffix_reading_on_its_plates_colour_is_decided(
    reader: PlateReader,
) -> None:
    crop = _scene_like(render_plate("蒙J5203警", "police"))
    settled = reader.settle(PlateCandidate("蒙J5203警", 0.7131, POLICE), (crop,))
    assert settled.text == "蒙J5203警"
    assert settled.confidence == plates.SUFFIX_COLOUR_CHANCE
    assert settled.confidence >= 0.9
    consulate = _scene_like(render_plate("闽B1049领", "consulate"))
    lost = (0.83, 0.99, 1.0, 1.0, 1.0, 0.99, 0.06)  # dev's 闽B1049领: the 领 at 0.06
    settled = reader.settle(PlateCandidate("闽B1049领", 0.7131, lost), (consulate,))
    assert settled.confidence == plates.SUFFIX_COLOUR_CHANCE


def test_a_suffix_the_colour_contradicts_stays_undecided(reader: PlateReader) -> None:
    # Dev's 陕T5284领, read 陕T5284警 on its black plate.
    crop = _scene_like(render_plate("陕T5284领", "consulate"))
    reading = PlateCandidate("陕T5284警", 0.7131, (1.0, 0.99, 1.0, 1.0, 1.0, 1.0, 0.03))
    assert reader.settle(reading, (crop,)).confidence == 0.7131


def test_an_unsure_core_stays_undecided(reader: PlateReader) -> None:
    # Dev's 蒙E3594警, read 豫E3594警: the province at 0.7923, under SUFFIX_CORE_SURE.
    crop = _scene_like(render_plate("蒙E3594警", "police"))
    scores = (0.7923, 0.99, 1.0, 1.0, 1.0, 1.0, 0.98)
    assert reader.settle(PlateCandidate("豫E3594警", 0.7131, scores), (crop,)).confidence == 0.7131


def test_readings_the_rule_does_not_touch(reader: PlateReader) -> None:
    police = _scene_like(render_plate("蒙J5203警", "police"))
    decided = PlateCandidate("蒙J5203警", 0.9936, POLICE)
    assert reader.settle(decided, (police,)).confidence == 0.9936
    blue = _scene_like(render_plate("蒙J52031", "blue"))
    plain = PlateCandidate("蒙J52031", 0.7131, POLICE)  # no suffix: colour confirms nothing
    assert reader.settle(plain, (blue,)).confidence == 0.7131
