"""Round 9 of the structure comparison (issue 16): a person or vehicle box discounts change
only where its own content changed (`edge.structure_features.changed_boxes`).

Round 7's and round 8's held-out looks are dev now. Their sheds before a person who fills the
view (astronaut, grace_hopper), or before a motorcycle close up, were all discounted by the
box of someone who had not moved; dev's intersection-demo1/0 smooth shed by a 0.5 "car" box
over the whole road in the baseline only. The photos and frames are real; every shed is
GENERATED (edge.structure_dataset: `build_round8_look`, `smooth_shed_pairs`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edge.structure_compare as structure_compare
import edge.structure_features as structure_features
from edge.config import StructureSettings
from edge.structure_compare import structure_loss
from edge.structure_dataset import (
    CLIP_SPLIT,
    ROUND9_GROUND_PHOTOS,
    ROUND9_PHOTOS,
    ROUND9_TEXTURE,
    SEED,
    SMOOTH_SHED_VIEWS,
    LabelledPair,
    build_round8_look,
    build_round9_look,
    smooth_shed_pairs,
    used_sources,
    write_pair_folder,
)
from edge.structure_eval import load_pairs, pixel_scores
from edge.structure_features import LearnedParts, changed_boxes
from tests.unit.edge.structure_helpers import decide_pair, whole_view


def test_a_box_discounts_only_when_its_content_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    distance = np.zeros((100, 100), np.float32)
    distance[10:40, 10:30] = 0.5  # a passer-by: most of their box changed
    distance[60:70, 0:100] = 0.5  # a shed's strip across a box that fills the view
    walked_in, fills_view = (10.0, 10.0, 30.0, 40.0), (0.0, 0.0, 100.0, 100.0)
    assert changed_boxes([walked_in, fills_view], distance) == [walked_in]
    monkeypatch.setattr(structure_features, "MIN_BOX_CHANGE", 0.0)
    assert changed_boxes([walked_in, fills_view], distance) == [walked_in, fills_view]


@pytest.fixture(scope="module")
def round8_look(parts: LearnedParts) -> dict[str, LabelledPair]:
    pairs, _ = build_round8_look(parts.finder)
    return {p.name: p for p in pairs}


def test_a_shed_before_a_person_who_fills_the_view_is_found(
    parts: LearnedParts, round8_look: dict[str, LabelledPair], monkeypatch: pytest.MonkeyPatch
) -> None:
    """grace_hopper/2: her box (0,7,253,255) in both views covered the shed; missed in round 8."""
    pair = round8_look["grace_hopper/2 built"]
    changed, f1 = decide_pair(parts, pair)
    assert changed
    assert f1 > 0.5
    settings, zone = StructureSettings(), whole_view(pair.before)
    compare = LearnedParts(parts.features, parts.finder, parts.net).comparison()
    for alteration, image in pair.controls:  # light, aim, weather, the person pasted in view
        assert not compare(pair.before, image, zone, settings).changed, alteration
    monkeypatch.setattr(structure_features, "MIN_BOX_CHANGE", 0.0)
    assert decide_pair(parts, pair) == (False, 0.0)


def test_a_smooth_face_partly_the_grounds_colour_is_segmented_by_its_lost_texture(
    parts: LearnedParts, round8_look: dict[str, LabelledPair], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ihc/1 (round 8's look): the face's colour moved in only part of it, so the colour
    region failed the shape test and the loss cue found nothing; its texture fell all over."""
    pair = round8_look["ihc/1 smooth shed"]
    zone = np.ones(pair.before.shape[:2], np.bool_)
    assert pixel_scores(structure_loss(pair.before, pair.after, zone), pair.truth)[2] > 0.9
    changed, f1 = decide_pair(parts, pair)
    assert changed
    assert f1 > 0.5
    monkeypatch.setattr(structure_compare, "LOSS_SEGMENT_DROP", 0.0)
    assert not structure_loss(pair.before, pair.after, zone).any()
    assert not decide_pair(parts, pair)[0]


def test_a_whole_view_box_in_the_baseline_alone_no_longer_hides_a_shed(
    parts: LearnedParts, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dev's intersection-demo1/0 smooth shed: the baseline's 0.5 "car" box over the whole
    road (0,19,255,245) discounted everything; its content did not change but for the shed."""
    rng = np.random.default_rng(SEED + 10)  # as build_set draws dev's smooth sheds
    pairs: list[LabelledPair] = []
    for clip in CLIP_SPLIT["dev"]:
        pairs += smooth_shed_pairs(shared_data / "clips" / clip, rng, SMOOTH_SHED_VIEWS)
    pair = {p.name: p for p in pairs}["intersection-demo1/0 smooth shed"]
    changed, f1 = decide_pair(parts, pair)
    assert changed
    assert f1 > 0.5
    monkeypatch.setattr(structure_features, "MIN_BOX_CHANGE", 0.0)
    assert not decide_pair(parts, pair)[0]


def test_round9_look_draws_on_photos_no_round_used(tmp_path: Path) -> None:
    photos = {*ROUND9_GROUND_PHOTOS, *ROUND9_PHOTOS, ROUND9_TEXTURE}
    assert not photos & used_sources("round9")
    pairs = build_round9_look()
    assert [p.source for p in pairs] == ["built"] * 10
    for pair in pairs:
        assert pair.before.shape == pair.after.shape == (256, 256, 3)
        assert pair.truth.any()
    again = build_round9_look()
    assert all(np.array_equal(a.after, b.after) for a, b in zip(pairs, again, strict=True))
    write_pair_folder(pairs, tmp_path)
    loaded = load_pairs(tmp_path)
    assert len(loaded) == 10
    by_name = {p.name: p for p in loaded}
    first = by_name["cell_0_smooth_shed.png"]
    assert np.array_equal(first.after, pairs[2].after)
    assert np.array_equal(first.truth, pairs[2].truth)
