"""Round 7 of the structure comparison (issue 16): the two open problems of round 6, on dev data.

(a) A shed built in front of a person who stands in both views was discounted as a passer-by;
(b) a smooth new face over sharp ground made the whole view read "softer than its baseline" and
the comparison declined it. The sheds are GENERATED (edge.structure_dataset); the frames, the
people and the detector are real.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import edge.structure_compare as structure_compare
import edge.structure_features as structure_features
from edge.config import DetectorSettings, StructureSettings
from edge.detector import OpenVINODetector
from edge.structure_compare import compare_structure
from edge.structure_dataset import (
    CLIP_SPLIT,
    FRESH_LOOK_FRAMES,
    PERSON_SHED_VIEWS,
    ROUND6_STRETCH,
    ROUND7_GROUND_PHOTOS,
    ROUND7_PERSON_PHOTOS,
    ROUND7_PHOTOS,
    ROUND7_STRETCH,
    ROUND7_TEXTURE,
    SEED,
    SMOOTH_SHED_VIEWS,
    TEXTURE_IMAGE,
    LabelledPair,
    _texture,
    build_round7_look,
    person_shed_pairs,
    skimage_data,
    sklearn_china_photo,
    smooth_shed_pairs,
    used_sources,
)
from edge.structure_features import LearnedParts, moving_boxes
from tests.unit.edge.structure_helpers import whole_view

# --- (b) a smooth new face is not blur ---------------------------------------------------------


@pytest.fixture(scope="module")
def smooth_sheds(shared_data: Path) -> list[LabelledPair]:
    """Dev's smooth sheds of vtest and intersection-demo1, as build_set draws them: plain
    painted sheds over paving, road markings and kerbs of real frames."""
    rng = np.random.default_rng(SEED + 10)
    pairs: list[LabelledPair] = []
    for clip in CLIP_SPLIT["dev"][:2]:
        pairs += smooth_shed_pairs(shared_data / "clips" / clip, rng, SMOOTH_SHED_VIEWS)
    return pairs


def test_a_smooth_shed_over_sharp_ground_is_judged_not_taken_for_blur(
    smooth_sheds: list[LabelledPair], monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = smooth_sheds[SMOOTH_SHED_VIEWS]
    assert pair.name == "intersection-demo1/0 smooth shed"
    settings, zone = StructureSettings(), whole_view(pair.before)
    change = compare_structure(pair.before, pair.after, zone, settings)
    assert change.conclusive, change.reason
    assert change.changed
    assert (change.mask & pair.truth).sum() > 0.5 * pair.truth.sum()
    # The whole-view test alone (before round 7) declines it.
    monkeypatch.setattr(structure_compare, "SOFTNESS_OUTSIDE_CHANGE", False)
    before = compare_structure(pair.before, pair.after, zone, settings)
    assert not before.conclusive
    assert "softer" in before.reason


def test_a_view_blurred_all_over_is_still_declined(smooth_sheds: list[LabelledPair]) -> None:
    """vtest's views (its frames are sharp; the intersection clips' are soft already, and a
    blur of 2.5 px hardly lowers their sharpness, before round 7 as now)."""
    for pair in smooth_sheds[:SMOOTH_SHED_VIEWS]:
        assert pair.name.startswith("vtest/")
        blurred = np.asarray(cv2.GaussianBlur(pair.before, (0, 0), 2.5), np.uint8)
        change = compare_structure(pair.before, blurred, whole_view(blurred), StructureSettings())
        assert not change.conclusive
        assert "softer" in change.reason


# --- (a) a person who stood still does not hide what was built in front of them ----------------


def test_only_a_person_now_hidden_below_where_they_stood_stops_discounting() -> None:
    standing = (100.0, 50.0, 140.0, 150.0)
    legs_hidden = (101.0, 50.0, 139.0, 95.0)  # the same person cut short by a shed in front
    walked = (180.0, 60.0, 220.0, 160.0)
    assert moving_boxes([legs_hidden], [standing]) == []
    assert moving_boxes([standing], [standing]) == [standing, standing]  # may have turned
    assert moving_boxes([walked], [standing]) == [walked, standing]
    assert moving_boxes([walked], []) == [walked]
    assert moving_boxes([], [standing]) == [standing]  # walked off
    assert moving_boxes([standing], [legs_hidden]) == [standing, legs_hidden]  # came out


def test_a_shed_before_a_standing_person_is_found(
    shared_data: Path, parts: LearnedParts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dev's vtest sheds before a person: the views hold the same person at the same place."""
    clip = shared_data / "clips" / CLIP_SPLIT["dev"][0]
    texture = _texture(shared_data / "images" / TEXTURE_IMAGE, "dev")
    pairs = person_shed_pairs(
        clip, parts.finder, texture, np.random.default_rng(SEED + 9), PERSON_SHED_VIEWS[clip.name]
    )
    settings = StructureSettings()

    def found() -> list[str]:
        compare = LearnedParts(parts.features, parts.finder, parts.net).comparison()
        return [
            p.name
            for p in pairs
            if compare(p.before, p.after, whole_view(p.before), settings).changed
        ]

    now = found()
    # Every box discounts, as before round 7 (round 9's box test and round 11's second look
    # at what lies outside a box came later: off too).
    monkeypatch.setattr(structure_features, "HIDDEN_RULE", False)
    monkeypatch.setattr(structure_features, "MIN_BOX_CHANGE", 0.0)
    monkeypatch.setattr(structure_features, "BOX_REMAINDER", 0)
    then = found()
    assert set(then) < set(now)
    assert {"vtest/1 shed before person", "vtest/4 shed before person"} <= set(now) - set(then)


# --- round 7's held-out look --------------------------------------------------------------------


def test_round7_look_draws_on_what_no_set_look_or_training_drew_on(
    shared_data: Path, model_path: Path
) -> None:
    finder = OpenVINODetector(
        DetectorSettings(model=str(model_path), imgsz=640, confidence=0.15), max_batch=1
    )
    clip, low, high = ROUND7_STRETCH
    assert clip in CLIP_SPLIT["test"]
    assert FRESH_LOOK_FRAMES[clip][1] < low
    assert clip != ROUND6_STRETCH[0]
    # The third look's motorway-cctv stretch ended at 734; 748 of the clip's frames decode.
    assert 734 < low < high <= 748
    photos = (*ROUND7_PERSON_PHOTOS, *ROUND7_GROUND_PHOTOS, *ROUND7_PHOTOS)
    assert not {*photos, ROUND7_TEXTURE} & used_sources("round7")
    assert all((skimage_data() / name).is_file() for name in photos)
    assert sklearn_china_photo().with_name(ROUND7_TEXTURE).is_file()
    pairs, unsure = build_round7_look(shared_data, finder)
    assert [p.source for p in pairs] == ["built"] * 10 + ["still"] * 2
    assert sum(p.name.endswith("shed before person") for p in pairs) == 2
    assert sum(p.name.endswith("smooth shed") for p in pairs) == 4
    for pair in pairs:
        assert pair.before.shape == pair.after.shape == (256, 256, 3)
        assert pair.truth.any() == (pair.source == "built")
        assert {"shift 3 px", "rain"} <= {name for name, _ in pair.controls}
    assert len(unsure) <= 12
    again, _ = build_round7_look(shared_data, finder)
    assert all(np.array_equal(a.after, b.after) for a, b in zip(pairs, again, strict=True))
