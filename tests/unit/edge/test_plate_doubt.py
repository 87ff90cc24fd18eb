"""Round 11: decided readings that the generated font's sure misreads could explain are doubted.

A look-alike digit (0 for Q, 1 for J) read less surely than right ones are, where the plate
allows a letter; an armed-police plate read with no province where its row shows one.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge import plate_decoding, plates
from edge.config import PlateSettings
from edge.detections import Image
from edge.plate_decoding import ALPHABET, PlateCandidate
from edge.plate_net import CHARACTERS
from edge.plate_scenes import render_plate
from edge.plates import PlateReader
from tests.unit.edge.test_plate_net import _tiny_onnx

# The rules' helpers are reached through their modules (plates.lookalike_digit...), so that on a
# tree without them only their own tests fail to import. The behaviour tests hand a reading to
# PlateReader.settle, the reader's last steps, as bench.plates_calibrate's score step does.


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader(PlateSettings())


@pytest.mark.parametrize(
    ("text", "scores", "lowest"),
    [
        ("冀M20159", (0.9, 0.98, 0.99, 0.85, 0.99, 0.99, 0.99), 0.85),  # dev: Q read as 0
        ("琼M111W2", (0.9, 0.98, 0.93, 0.97, 0.99, 0.99, 0.99), 0.93),  # J read as 1
        ("WJ辽85401", (0.99,) * 7 + (0.9,), 0.9),  # an armed-police plate's last place
        ("WJ辽10401", (0.99, 0.99, 0.99, 0.5, 0.99, 0.5, 0.99, 0.99), 0.99),  # last place only
        ("使010538", (0.99, 0.5, 0.5, 0.99, 0.99, 0.99, 0.99), 1.0),  # 使's digits: no letter
        ("皖A23456", (0.5,) * 7, 1.0),  # no 0 or 1
        ("京A1ABCD", (0.99, 0.99, 0.4, 0.99, 0.99, 0.99, 0.99), 0.4),
    ],
)
def test_lookalike_digit(text: str, scores: tuple[float, ...], lowest: float) -> None:
    assert plates.lookalike_digit(text, scores) == lowest


def test_a_decided_reading_with_an_unsure_lookalike_digit_is_not_decided(
    reader: PlateReader,
) -> None:
    crop = render_plate("冀M20159", "blue")
    scores = (0.9026, 0.9789, 0.9924, 0.8539, 0.9958, 0.9958, 0.9956)  # dev's 冀M2Q159
    doubted = reader.settle(PlateCandidate("冀M20159", 0.9936, scores), (crop,))
    assert doubted.text == "冀M20159"
    assert doubted.confidence == plates.NEAR_TIE_CHANCE
    sure = (0.9026, 0.9789, 0.9924, 0.9853, 0.9958, 0.9958, 0.9956)  # as right ones read
    kept = reader.settle(PlateCandidate("冀M20159", 0.9936, sure), (crop,))
    assert kept.confidence == 0.9936


def test_a_decided_reading_of_pp_ocrs_favourite_province_read_unsurely_is_not_decided(
    reader: PlateReader,
) -> None:
    crop = render_plate("桂C96998", "blue")
    # Dev's 桂C96998, read 皖C96998 (皖 at 0.8953 over its views) and decided.
    favourite = (0.8953, 0.9934, 0.9999, 0.9999, 0.9999, 0.9997, 0.9999)
    doubted = reader.settle(PlateCandidate("皖C96998", 0.9936, favourite), (crop,))
    assert doubted.confidence == plates.NEAR_TIE_CHANCE
    # 皖 as PP-OCR reads it on real 皖 plates, and another province as unsure: decided.
    sure = (0.9496, *favourite[1:])
    assert reader.settle(PlateCandidate("皖C96998", 0.9936, sure), (crop,)).confidence == 0.9936
    other = reader.settle(PlateCandidate("桂C96998", 0.9936, favourite), (crop,))
    assert other.confidence == 0.9936


def test_an_undecided_reading_is_left_as_it_is(reader: PlateReader) -> None:
    scores = (0.9, 0.98, 0.99, 0.5, 0.99, 0.99, 0.99)
    reading = PlateCandidate("冀M20159", 0.7131, scores)
    assert reader.settle(reading, (render_plate("冀M20159", "blue"),)).confidence == 0.7131


def _small(plate: Image, width: int = 160) -> Image:
    height = round(width * plate.shape[0] / plate.shape[1])
    return np.asarray(cv2.resize(plate, (width, height), interpolation=cv2.INTER_AREA))


def test_a_bare_wj_reading_over_a_province_glyph_is_not_decided(reader: PlateReader) -> None:
    # PP-OCR read WJ湘96689 without its province (dev: WJ藏7310B as WJ7310B, decided).
    crop = _small(render_plate("WJ湘96689", "armed_police"))
    bare = PlateCandidate("WJ96689", 0.9951, (0.99,) * 7)
    assert reader.settle(bare, (crop,)).confidence == plates.NEAR_TIE_CHANCE


@pytest.mark.parametrize("fill", [" ", "·"])
def test_a_headquarters_plate_with_no_province_stays_decided(
    reader: PlateReader, fill: str
) -> None:
    # Real 武警总部 plates have no province: WJ, a blank (or a dot) where it would be, then 5.
    crop = _small(render_plate(f"WJ{fill}96689", "armed_police"))
    read = reader.read_plate(crop)
    assert read is not None
    assert read.text == "WJ96689"
    assert read.confidence >= 0.9


def test_province_glyph_reads_the_forced_province() -> None:
    steps = 16
    chars = np.zeros((steps, len(ALPHABET)), np.float32)
    gap = np.full(steps, 0.9, np.float32)
    for t, char in enumerate(["W", "J", "湘", "9", "6", "6", "8", "9"]):
        step = 2 * t
        chars[step, ALPHABET.index(char)] = 0.9 if char != "湘" else 0.03
        gap[step] = 0.1 if char != "湘" else 0.97
    layout = plate_decoding.WJ_PROVINCE_LAYOUT
    assert plates.province_glyph(chars, gap, layout) == pytest.approx(0.03)
    assert plates.bare_wj("WJ96689")
    assert not plates.bare_wj("WJ湘96689")
    assert not plates.bare_wj("皖A12345")


def test_vote_doubts_a_reading_the_nets_agreement_lifted(tmp_path: Path) -> None:
    # Dev's 粤PDJ1047: PP-OCR read 皖PDJ1047 undecided (皖 at 0.7463), the sure net read the same
    # and its agreement lifted it to AGREE_CHANCE, a false read; the doubt comes after the vote.
    weights = tmp_path / "spells.onnx"
    _tiny_onnx(weights, CHARACTERS, len(CHARACTERS), spells="皖PDJ1047")
    vote = PlateReader(PlateSettings(second_opinion="vote", second_opinion_weights=str(weights)))
    scores = (0.7463, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99)
    reading = PlateCandidate("皖PDJ1047", 0.7131, scores)
    settled = vote.settle(reading, (render_plate("粤PDJ1047", "green"),))
    assert settled.opinion == ("皖PDJ1047", 0.99)
    assert settled.confidence == plates.NEAR_TIE_CHANCE
    # The same reading with 皖 as sure as on real 皖 plates: the agreement decides it.
    sure = PlateCandidate("皖PDJ1047", 0.7131, (0.97, *scores[1:]))
    settled_sure = vote.settle(sure, (render_plate("粤PDJ1047", "green"),))
    assert settled_sure.confidence == plates.AGREE_CHANCE


def test_a_decided_province_read_as_the_half_of_another_is_not_decided(
    reader: PlateReader,
) -> None:
    # Round 12's dev: 琼KF71F18 read 京KF71F18 (京 at 0.996, decided): 京 is 琼's right half.
    scores = (0.996, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99)
    reading = PlateCandidate("京KF71F18", 0.9951, scores)
    whole = _small(render_plate("琼KF71F18", "green"), 150)
    assert reader.settle(reading, (whole,)).confidence == plates.NEAR_TIE_CHANCE
    half = _small(render_plate("京KF71F18", "green"), 150)
    assert reader.settle(reading, (half,)).confidence == 0.9951
