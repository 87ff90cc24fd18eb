"""Round 10 of the structure comparison (issue 16): a car the detector names as something
else ("train", "cell phone") is still a passer-by (`edge.structure_features.transient_boxes_of`);
a new face's lost texture judged inside its outline (`edge.structure_compare.LOSS_INTERIOR`) was
tried and is off.

Round 7's look (dev since round 9) raised "car in view" on chelsea/0: the pasted car, found as a
0.45 "cell phone", was no person or vehicle, so nothing discounted it. The photos and the car
are real; the sheds are GENERATED (edge.structure_dataset).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edge.structure_compare as structure_compare
import edge.structure_features as structure_features
from edge.detections import Detections
from edge.structure_compare import structure_loss
from edge.structure_dataset import (
    CLIP_SPLIT,
    PERSON_SHED_VIEWS,
    ROUND10_GROUNDS,
    ROUND10_TEXTURE,
    SEED,
    TEXTURE_IMAGE,
    LabelledPair,
    _texture,
    build_round7_look,
    build_round10_look,
    elevation_ground,
    matplotlib_sample,
    person_shed_pairs,
    used_sources,
)
from edge.structure_eval import pixel_scores
from edge.structure_features import LearnedParts, transient_boxes_of
from tests.unit.edge.structure_helpers import assert_look_of_fourteen, decide, decide_pair, names

NAMES = {0: "person", 2: "car", 6: "train", 9: "traffic light", 11: "stop sign", 67: "cell phone"}


def _found(*boxes: tuple[int, float]) -> Detections:
    """Detections of (class id, confidence), each at its own place."""
    xyxy = np.array([[10.0 * i, 0.0, 10.0 * i + 8, 8.0] for i in range(len(boxes))])
    return Detections.create(
        xyxy.reshape(-1, 4),
        np.array([c for _, c in boxes]),
        np.array([k for k, _ in boxes]),
        NAMES,
    )


def test_other_movable_things_count_when_sure_and_fixtures_never(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = _found((0, 0.3), (6, 0.58), (67, 0.45), (67, 0.3), (11, 0.77), (9, 0.9), (2, 0.2))
    boxes = transient_boxes_of(found)
    assert boxes == [tuple(map(float, found.xyxy[i])) for i in (0, 1, 2)]
    monkeypatch.setattr(structure_features, "MIN_MOVABLE_CONFIDENCE", None)
    assert transient_boxes_of(found) == boxes[:1]  # the rule before round 10


@pytest.fixture(scope="module")
def round7_look(parts: LearnedParts, shared_data: Path) -> dict[str, LabelledPair]:
    pairs, _ = build_round7_look(shared_data, parts.finder)
    return names(pairs)


def test_a_car_taken_for_a_cell_phone_raises_no_alarm(
    parts: LearnedParts, round7_look: dict[str, LabelledPair], monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = round7_look["chelsea/0 built"]
    controls = dict(pair.controls)
    before = pair.before
    assert not decide(parts, before, controls["car in view"])
    assert decide(parts, before, pair.after)
    monkeypatch.setattr(structure_features, "MIN_MOVABLE_CONFIDENCE", None)
    assert decide(parts, before, controls["car in view"])  # the alarm before round 10


def test_round10_look_draws_on_what_no_round_used(parts: LearnedParts, shared_data: Path) -> None:
    assert not {*ROUND10_GROUNDS, ROUND10_TEXTURE} & used_sources("round10")
    assert used_sources("round10") < used_sources()
    assert all(matplotlib_sample(name).is_file() for name in (*ROUND10_GROUNDS, ROUND10_TEXTURE))
    for name in ROUND10_GROUNDS:
        ground = elevation_ground(name)
        assert min(ground.shape[:2]) >= 256
        assert ground.dtype == np.uint8
    pairs, stress = build_round10_look(shared_data, parts.finder)
    assert_look_of_fourteen(pairs, stress, build_round10_look(shared_data, parts.finder)[0])
    assert sum(p.name.endswith("shed before person") for p in pairs) == 4


def test_a_dark_face_judged_inside_its_outline_is_found_but_the_rule_is_off(
    parts: LearnedParts, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dev's vtest/0 shed before person: a dark plain face over smooth asphalt and two people.
    Its colour region holds its own outline and cast shadow, where texture rose; over the whole
    region the texture fall's median is 0.08, so the loss cue drops it. Judged 8 px inside the
    outline it is found; that rule is not kept (it also lets pasted passers-by the detector
    misses through: docs/benchmarks.md, round 10), so round 10's comparison missed it. Round 11
    judges inside the outline only where the face hides a person who stayed put
    (tests/unit/edge/test_structure_round11.py)."""
    clip = shared_data / "clips" / CLIP_SPLIT["dev"][0]
    texture = _texture(shared_data / "images" / TEXTURE_IMAGE, "dev")
    pairs = person_shed_pairs(
        clip, parts.finder, texture, np.random.default_rng(SEED + 9), PERSON_SHED_VIEWS[clip.name]
    )
    pair = names(pairs)["vtest/0 shed before person"]
    zone = np.ones(pair.truth.shape, np.bool_)
    assert structure_compare.LOSS_INTERIOR == 0
    assert not structure_loss(pair.before, pair.after, zone).any()
    # Round 11 judges it inside the outline where it hides a person: off, as in round 10.
    monkeypatch.setattr(structure_compare, "LOSS_HIDDEN_INTERIOR", 0)
    assert not decide_pair(parts, pair)[0]
    monkeypatch.setattr(structure_compare, "LOSS_INTERIOR", 8)
    assert pixel_scores(structure_loss(pair.before, pair.after, zone), pair.truth)[2] > 0.7
    assert decide_pair(parts, pair)[0]
