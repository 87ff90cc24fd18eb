"""Plate reading: constrained CTC decoding, the real recogniser on real crops, finding, voting."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from contracts.events import PLATE_PATTERN, PlateReading
from edge.config import PlateSettings, ReadPass
from edge.detections import Image
from edge.plate_decoding import ALNUM, LAST_ONLY, LETTERS, PROVINCES, PlateCandidate, PlateDecoder
from edge.plate_eval import PlainPlateReader, compare_with_baseline, evaluate_plates, load_crop
from edge.plate_votes import PlateVote
from edge.plates import PlateReader
from tests.conftest import SHARED_DATA

LPRNET = SHARED_DATA / "plates" / "lprnet"
VTEST = SHARED_DATA / "clips" / "vtest.avi"
# Exact-match rate reached on the 300 lprnet crops (297/300; one file is not a plate at all),
# less a small margin for onnxruntime/OpenCV build differences.
LPRNET_EXACT_FLOOR = 0.98
# The same crops found on a vehicle first: 296/300 (one dark, orange-cast plate is not found).
SCENE_EXACT_FLOOR = 0.97


# ---------------------------------------------------------------- the plate alphabet


def test_alphabets_agree_with_the_wire_pattern() -> None:
    pattern = re.compile(PLATE_PATTERN)
    for province in PROVINCES:
        assert pattern.match(f"{province}A12345"), province
    for letter in LETTERS:
        assert pattern.match(f"皖{letter}12345"), letter
    for char in ALNUM:
        assert pattern.match(f"皖A{char}2345"), char
    for char in LAST_ONLY:
        assert pattern.match(f"粤B1234{char}"), char
    for never in "IO":
        assert not pattern.match(f"皖{never}12345")
        assert not pattern.match(f"皖A{never}2345")


# ---------------------------------------------------------------- the constrained decoder

# A recogniser character list shaped like PP-OCR's: blank first, then characters, space last.
CHARSET = ["blank", *PROVINCES, *ALNUM, *LAST_ONLY, "O", "I", "o", "·", "合", "肥", " "]
INDEX = {char: i for i, char in enumerate(CHARSET)}


def frames(*steps: dict[str, float]) -> np.ndarray:
    """One CTC step per dict of character -> probability; what is left goes to the blank."""
    matrix = np.zeros((len(steps), len(CHARSET)), dtype=np.float32)
    for t, step in enumerate(steps):
        for char, probability in step.items():
            matrix[t, INDEX[char]] = probability
        matrix[t, 0] = max(0.0, 1.0 - sum(step.values()))
    return matrix


def spelled(text: str, sure: float = 0.95) -> list[dict[str, float]]:
    """Each character for one step, a blank step after each: a clean reading."""
    steps: list[dict[str, float]] = []
    for char in text:
        steps += [{char: sure}, {}]
    return steps


@pytest.fixture(scope="module")
def decoder() -> PlateDecoder:
    return PlateDecoder(CHARSET)


def test_clean_scores_decode_to_the_plate_with_per_character_confidence(
    decoder: PlateDecoder,
) -> None:
    candidate = decoder.decode(frames(*spelled("皖A12345")))
    assert candidate is not None
    assert candidate.text == "皖A12345"
    assert candidate.char_confidences == pytest.approx([0.95] * 7, abs=1e-3)
    assert candidate.confidence == pytest.approx(0.95, abs=1e-3)
    assert candidate.valid


def test_letter_o_and_i_in_alphanumeric_slots_read_as_digits(decoder: PlateDecoder) -> None:
    steps = spelled("皖A1")
    steps += [{"O": 0.9}, {}, {"I": 0.6}, {}]
    steps += spelled("23")
    candidate = decoder.decode(frames(*steps))
    assert candidate is not None
    assert candidate.text == "皖A10123"
    # Merged scores: the O's probability counts for 0.
    assert candidate.char_confidences[3] == pytest.approx(0.9, abs=1e-3)


def test_each_slot_only_takes_its_own_alphabet(decoder: PlateDecoder) -> None:
    """Greedy would read '8' as the office letter and '合' as the province."""
    steps = [{"合": 0.8, "皖": 0.1}, {}, {"8": 0.7, "B": 0.2}, {}, *spelled("12345")]
    candidate = decoder.decode(frames(*steps))
    assert candidate is not None
    assert candidate.text == "皖B12345"


def test_a_missing_province_is_filled_by_its_best_scoring_step(decoder: PlateDecoder) -> None:
    """Greedy decoding drops a faint province character and returns six characters."""
    steps = [{"苏": 0.3}, {}, *spelled("E2S968")]
    candidate = decoder.decode(frames(*steps))
    assert candidate is not None
    assert candidate.text == "苏E2S968"
    assert candidate.char_confidences[0] == pytest.approx(0.3, abs=1e-3)


def test_repeated_characters_need_a_gap_between_them(decoder: PlateDecoder) -> None:
    # Two certain steps of '3' with no gap are ONE character; the plate still needs a 7th, which
    # costs as much wherever it goes, but reading '33' out of the run without a gap is illegal.
    run = [*spelled("皖A", 1.0), {"3": 1.0}, {"3": 1.0}, {}, *spelled("456", 1.0)]
    read = decoder.decode(frames(*run))
    assert read is not None
    assert len(read.text) == 7
    assert "33" not in read.text, read
    separated = [*spelled("皖A"), *spelled("333"), *spelled("45")]
    read = decoder.decode(frames(*separated))
    assert read is not None
    assert read.text == "皖A33345"


def test_separator_dot_counts_as_a_gap(decoder: PlateDecoder) -> None:
    steps = [{"皖": 0.9}, {"A": 0.9}, {"·": 0.95}, {"·": 0.9}, *spelled("12345")]
    candidate = decoder.decode(frames(*steps))
    assert candidate is not None
    assert candidate.text == "皖A12345"


def test_eight_character_new_energy_and_special_last_characters(decoder: PlateDecoder) -> None:
    energy = decoder.decode(frames(*spelled("粤BD12345")))
    assert energy is not None
    assert energy.text == "粤BD12345"
    police = decoder.decode(frames(*spelled("京A1234警")))
    assert police is not None
    assert police.text == "京A1234警"


def test_too_few_steps_hold_no_plate(decoder: PlateDecoder) -> None:
    assert decoder.decode(frames(*[{"1": 0.9}] * 6)) is None


def test_decoder_rejects_a_recogniser_that_cannot_spell_plates() -> None:
    with pytest.raises(ValueError, match="cannot emit plate characters"):
        PlateDecoder(["blank", *ALNUM, " "])


def test_decoder_rejects_scores_of_the_wrong_shape(decoder: PlateDecoder) -> None:
    with pytest.raises(ValueError, match="scores must be"):
        decoder.decode(np.zeros((20, 7), dtype=np.float32))


# ---------------------------------------------------------------- settings


def test_settings_forbid_unknown_keys_and_check_read_passes() -> None:
    with pytest.raises(ValidationError):
        PlateSettings.model_validate({"min_confidense": 0.4})
    with pytest.raises(ValidationError, match="input_width"):
        ReadPass(text_width=200, input_width=160)
    with pytest.raises(ValidationError):
        PlateSettings(passes=[])


# ---------------------------------------------------------------- the real recogniser


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader(PlateSettings())


def test_real_lprnet_crops_read_exactly(reader: PlateReader) -> None:
    evaluation = evaluate_plates(LPRNET, reader)
    assert evaluation.count == 300
    assert evaluation.exact_match_rate >= LPRNET_EXACT_FLOOR, evaluation.failures
    assert evaluation.char_accuracy >= 0.99
    assert evaluation.ms_median > 0.0
    assert len(evaluation.failures) <= 6


def test_onnxruntime_engine_reads_like_openvino(reader: PlateReader) -> None:
    onnxruntime = PlateReader(PlateSettings(engine="onnxruntime", precision="f32"))
    files = sorted(LPRNET.glob("*.jpg"))[:40]
    for path in files:
        crop = load_crop(path)
        ours, theirs = reader.read_plate(crop), onnxruntime.read_plate(crop)
        assert ours is not None
        assert theirs is not None
        assert (ours.text, theirs.text) == (path.stem, path.stem)


def test_comparison_runs_reader_and_baseline_on_the_same_folder(tmp_path: Path) -> None:
    """Real crops copied to a scratch folder: the baseline misses 皖AP666P's province."""
    for name in ("皖A08V01.jpg", "皖AP666P.jpg"):
        shutil.copy(LPRNET / name, tmp_path / name)
    comparison = compare_with_baseline(tmp_path, PlateSettings())
    assert comparison.reader.exact_match_rate == 1.0
    assert comparison.baseline.exact_match_rate == 0.5
    assert [f.read for f in comparison.baseline.failures] == ["AP666P"]


def test_the_plain_baseline_reads_an_easy_crop() -> None:
    candidate = PlainPlateReader().read_plate(load_crop(LPRNET / "皖A08V01.jpg"))
    assert candidate is not None
    assert candidate.text == "皖A08V01"


def test_a_sign_that_is_no_plate_reads_as_none(reader: PlateReader) -> None:
    """皖AJ0J22.jpg in the lprnet set actually shows a shop sign (合肥城泊), not a plate."""
    assert reader.read_plate(load_crop(LPRNET / "皖AJ0J22.jpg")) is None


def test_bad_crops_are_refused_with_a_clear_error(reader: PlateReader) -> None:
    with pytest.raises(ValueError, match="plate crop: expected a uint8"):
        reader.read_plate(np.zeros((24, 94, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="too small"):
        reader.read_plate(np.zeros((2, 94, 3), dtype=np.uint8))
    grey = cv2.cvtColor(load_crop(LPRNET / "皖A08V01.jpg"), cv2.COLOR_BGR2GRAY)
    read = reader.read_plate(np.asarray(grey, dtype=np.uint8))
    assert read is not None
    assert read.text == "皖A08V01"


def test_evaluation_counts_misreads_and_unreadable_files(tmp_path: Path) -> None:
    """Real crops copied into a scratch folder, one relabelled, plus one broken file."""
    shutil.copy(LPRNET / "皖A08V01.jpg", tmp_path / "皖A08V01.jpg")
    shutil.copy(LPRNET / "浙D335DZ.jpg", tmp_path / "浙D335DX.jpg")  # wrong label on purpose
    (tmp_path / "皖A00000.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored: not an image")

    evaluation = evaluate_plates(tmp_path, PlateReader(PlateSettings()))

    assert evaluation.count == 3
    assert evaluation.exact_match_rate == pytest.approx(1 / 3, abs=1e-3)
    # 7 of 7, 6 of 7 (one substitution) and 0 of 7 characters.
    assert evaluation.char_accuracy == pytest.approx(13 / 21, abs=1e-3)
    failures = {f.file: f.read for f in evaluation.failures}
    assert failures == {"浙D335DX.jpg": "浙D335DZ", "皖A00000.jpg": None}


def test_evaluation_of_a_missing_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plate folder not found"):
        evaluate_plates(tmp_path / "nowhere", PlainPlateReader())


# ---------------------------------------------------------------- finding a plate on a vehicle

# In the first frame of vtest.avi the white van stands at about x 651..724, y 44..100: too small
# to carry a readable plate, so the scene is a 4x close-up of that corner, as a zoomed camera
# would give. VAN_BOX was chosen by hand in that close-up.
VAN_CORNER = (slice(20, 120), slice(620, 760))
VAN_BOX = (125.0, 95.0, 415.0, 320.0)


@pytest.fixture(scope="module")
def van_closeup() -> Image:
    capture = cv2.VideoCapture(str(VTEST))
    ok, frame = capture.read()
    capture.release()
    assert ok, f"cannot read {VTEST}"
    corner = frame[VAN_CORNER]
    return np.asarray(
        cv2.resize(corner, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC), dtype=np.uint8
    )


def with_plate(scene: Image, plate_file: str) -> Image:
    """A generated scene: a real lprnet crop pasted over the van's own (British) number plate."""
    plate = cv2.resize(load_crop(LPRNET / plate_file), (104, 30), interpolation=cv2.INTER_CUBIC)
    pasted = scene.copy()
    pasted[232:262, 148:252] = plate
    return pasted


@pytest.mark.parametrize("plate_file", ["皖A08V01.jpg", "浙D335DZ.jpg", "苏E5YR23.jpg"])
def test_read_vehicle_finds_and_reads_a_pasted_plate(
    reader: PlateReader, van_closeup: Image, plate_file: str
) -> None:
    """Generated scene: a real plate crop pasted on the van of a real vtest.avi frame."""
    candidate = reader.read_vehicle(with_plate(van_closeup, plate_file), VAN_BOX)
    assert candidate is not None
    assert candidate.text == Path(plate_file).stem


def test_read_vehicle_reads_nearly_every_lprnet_plate_pasted_on_the_van(
    reader: PlateReader, van_closeup: Image
) -> None:
    """Generated scenes: each of the 300 real crops pasted on the van in turn (296 read)."""
    files = sorted(LPRNET.glob("*.jpg"))
    right = 0
    for path in files:
        candidate = reader.read_vehicle(with_plate(van_closeup, path.name), VAN_BOX)
        right += candidate is not None and candidate.text == path.stem
    assert right / len(files) >= SCENE_EXACT_FLOOR


def test_read_vehicle_without_a_chinese_plate_is_none(
    reader: PlateReader, van_closeup: Image
) -> None:
    """The van as filmed: its yellow British plate is found but does not read as a plate."""
    assert reader.read_vehicle(van_closeup, VAN_BOX) is None
    lawn = (0.0, 300.0, 400.0, 400.0)  # grass below the van: nothing plate-like at all
    assert reader.read_vehicle(van_closeup, lawn) is None


def test_read_vehicle_refuses_a_bad_box(reader: PlateReader, van_closeup: Image) -> None:
    with pytest.raises(ValueError, match="ordered"):
        reader.read_vehicle(van_closeup, (400.0, 95.0, 125.0, 320.0))
    with pytest.raises(ValueError, match="4 finite numbers"):
        reader.read_vehicle(van_closeup, (1.0, 2.0, 3.0))
    # A box that lies outside the frame is no error: there is simply nothing to read.
    assert reader.read_vehicle(van_closeup, (5000.0, 5000.0, 6000.0, 6000.0)) is None


# ---------------------------------------------------------------- voting across frames


def reading(text: str, confidence: float, chars: tuple[float, ...] = ()) -> PlateCandidate:
    return PlateCandidate(text, confidence, chars or (confidence,) * len(text))


def test_vote_takes_the_confidence_weighted_majority() -> None:
    vote = PlateVote()
    for candidate in (
        reading("皖A12345", 0.9),
        reading("皖A12345", 0.8),
        reading("皖A72345", 0.95),
        reading("皖A99999", 0.99),
    ):
        vote.add(candidate)
    best = vote.best()
    # 皖A12345: 1.7 + per position its '1' (1.7) outweighs '7' (0.95).
    assert best == PlateReading(text="皖A12345", confidence=0.85, votes=2)


def test_vote_ignores_nothing_and_text_that_is_no_plate() -> None:
    vote = PlateVote()
    assert vote.best() is None
    vote.add(None)
    vote.add(reading("合肥城泊", 0.99))
    assert len(vote) == 0
    vote.add(reading("皖A12345", 0.7))
    assert vote.best() == PlateReading(text="皖A12345", confidence=0.7, votes=1)


def test_vote_per_position_fixes_a_character_the_leader_misread() -> None:
    """The most frequent text loses a character to better-scored readings of that position."""
    vote = PlateVote()
    vote.add(reading("皖A82345", 0.9, (0.9, 0.9, 0.5, 0.9, 0.9, 0.9, 0.9)))
    vote.add(reading("皖A82345", 0.9, (0.9, 0.9, 0.5, 0.9, 0.9, 0.9, 0.9)))
    vote.add(reading("皖A12345", 0.85, (0.9, 0.9, 0.95, 0.9, 0.9, 0.9, 0.5)))
    vote.add(reading("皖A12346", 0.8, (0.9, 0.9, 0.95, 0.9, 0.9, 0.9, 0.3)))
    best = vote.best()
    assert best is not None
    # Leader 皖A82345 (weight 1.8). 皖A12346 is two characters away, so it does not vote;
    # at the 3rd character '1' has 0.95 against '8''s 0.5 + 0.5.
    assert best.text == "皖A82345"
    vote.add(reading("皖A12345", 0.85, (0.9, 0.9, 0.95, 0.9, 0.9, 0.9, 0.5)))
    best = vote.best()
    assert best is not None
    assert best.text == "皖A12345"
    assert best.votes == 2
