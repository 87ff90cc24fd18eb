"""Round 11 of the structure comparison (issue 16): a region the passers-by's boxes discounted is
judged again without the boxes' part (`edge.structure_features.BOX_REMAINDER`); a new smooth
face over where a person who stayed put is now hidden below has its lost texture judged inside
its outline (`edge.structure_compare.LOSS_HIDDEN_INTERIOR`, with
`edge.structure_features.hidden_parts`); round 10's look
is dev now (`edge.structure_dataset.build_dev_all`, `bench.structures --set dev-all`: 83 pairs),
and round 11's fresh look (`build_round11_look`) draws on sources no set, look, training run or
test did.

Dev's vtest/0 smooth shed: a plain painted shed whose changed region merged with a walking
man of the before view, so his box (his content changed: he walked off) discounted the whole
region, shed and all. Dev's vtest/0 shed before person and round 10's jacksboro/0 (dev now): a
plain face before a standing person, whose outline and shadow raise texture over the region, so
the median fall over all of it was too small; judged inside the outline it is found. Round 10
judged every region so and let pasted passers-by through: a pasted car hides no one.

The look's grounds are real data (an MRI slice, face photos) RENDERED as aerial ground and its
sheds are composited in: GENERATED (edge.structure_dataset).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

import edge.structure_compare as structure_compare
import edge.structure_features as structure_features
from contracts.events import Phase
from contracts.sites import ZoneConfig, ZoneKind
from edge.config import EvidenceSettings, StructureSettings
from edge.detections import Frame
from edge.structure_dataset import (
    CLIP_SPLIT,
    PERSON_SHED_VIEWS,
    ROUND11_GROUNDS,
    ROUND11_TEXTURE,
    ROUND11B_GROUND,
    ROUND11B_TEXTURE,
    SEED,
    SMOOTH_SHED_VIEWS,
    TEXTURE_IMAGE,
    LabelledPair,
    _texture,
    build_dev_all,
    build_round10_look,
    build_round11_look,
    build_round11b_look,
    matplotlib_sample,
    paving_ground,
    person_shed_pairs,
    round11_ground,
    skimage_data,
    smooth_shed_pairs,
    used_sources,
)
from edge.structure_features import LearnedParts, hidden_parts
from edge.structures import BaselineStore, StructureWatch
from tests.unit.edge.conftest import T0
from tests.unit.edge.structure_helpers import (
    assert_look_of_fourteen,
    assert_rendered_ground,
    decide_pair,
    names,
    whole_view,
)


def test_round11_look_draws_on_what_no_round_used(parts: LearnedParts, shared_data: Path) -> None:
    assert not {*ROUND11_GROUNDS, ROUND11_TEXTURE} & used_sources("round11")
    assert used_sources("round11") < used_sources()
    assert matplotlib_sample(ROUND11_GROUNDS[0]).is_file()
    assert (skimage_data() / ROUND11_GROUNDS[1]).is_file()
    assert (skimage_data() / ROUND11_TEXTURE).is_file()
    for name in ROUND11_GROUNDS:
        assert_rendered_ground(round11_ground(name))
    pairs, stress = build_round11_look(shared_data, parts.finder)
    assert_look_of_fourteen(pairs, stress, build_round11_look(shared_data, parts.finder)[0])
    assert sum(p.name.endswith("shed before person") for p in pairs) == 4
    assert sum(p.name.endswith("smooth shed") for p in pairs) == 2
    round10, _ = build_round10_look(shared_data, parts.finder)
    assert not any(np.array_equal(a.before, b.before) for a in pairs for b in round10)


def test_round11_second_look_draws_on_what_no_round_used(
    parts: LearnedParts, shared_data: Path
) -> None:
    assert not {*ROUND11B_GROUND, ROUND11B_TEXTURE} & used_sources("round11b")
    assert used_sources("round11b") < used_sources()
    assert all((skimage_data() / name).is_file() for name in ROUND11B_GROUND)
    assert matplotlib_sample(ROUND11B_TEXTURE).is_file()
    paving = paving_ground()
    assert paving.shape == (600, 600, 3)
    pairs, stress = build_round11b_look(shared_data, parts.finder)
    assert_look_of_fourteen(pairs, stress, build_round11b_look(shared_data, parts.finder)[0])


def test_dev_holds_round10_look(parts: LearnedParts, shared_data: Path) -> None:
    dev = build_dev_all(shared_data, parts.finder)
    assert [len(pairs) for pairs, _ in dev][:4] == [47, 12, 10, 14]  # round 12 adds round 11's
    round10, stress = build_round10_look(shared_data, parts.finder)
    assert [p.name for p in dev[3][0]] == [p.name for p in round10]
    assert all(np.array_equal(a.after, b.after) for a, b in zip(dev[3][0], round10, strict=True))
    assert len(dev[3][1]) == len(stress)
    assert all(crops for _, crops in (dev[0], dev[3]))


def test_a_shed_merged_with_a_passer_by_keeps_what_lies_outside_his_box(
    parts: LearnedParts, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(SEED + 10)  # as build_set draws dev's smooth sheds
    clip = shared_data / "clips" / CLIP_SPLIT["dev"][0]
    pair = names(smooth_shed_pairs(clip, rng, SMOOTH_SHED_VIEWS))["vtest/0 smooth shed"]
    changed, f1 = decide_pair(parts, pair)
    assert changed
    assert f1 > 0.4
    assert structure_features.BOX_REMAINDER > 0
    # Round 12's ground-relative reading (and round 14's varied-ground net) may find it apart
    # from him too: off, as in round 11.
    monkeypatch.setattr(structure_features, "GROUND_RELATIVE_CHANCE", None)
    monkeypatch.setattr(structure_features, "VARIED_CHANCE", None)
    assert decide_pair(parts, pair)[0]
    monkeypatch.setattr(structure_features, "BOX_REMAINDER", 0)
    assert decide_pair(parts, pair) == (False, 0.0)  # round 10: his box discounted it all


def test_where_a_person_who_stayed_is_now_hidden_below() -> None:
    standing = (10.0, 10.0, 30.0, 80.0)
    legs_hidden = (10.0, 11.0, 31.0, 50.0)
    walked = (60.0, 12.0, 80.0, 82.0)
    assert hidden_parts([legs_hidden], [standing]) == [(10.0, 50.0, 30.0, 80.0)]
    assert hidden_parts([walked], [standing]) == []
    assert hidden_parts([standing], [standing]) == []
    assert hidden_parts([standing], [legs_hidden]) == []  # came out from behind: nothing hides
    side_cut = (10.0, 10.0, 25.0, 50.0)  # a quarter of their width hidden too (round 11)
    assert hidden_parts([side_cut], [standing]) == [(10.0, 50.0, 30.0, 80.0)]
    assert hidden_parts([(10.0, 10.0, 20.0, 50.0)], [standing]) == []  # half: someone else


def test_the_watch_opens_on_a_shed_that_hides_a_standing_person(
    parts: LearnedParts,
    sheds_before_people: list[LabelledPair],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The camera's watch (edge.structures) hands the hidden parts on, as the bench does."""
    pair = sheds_before_people[0]
    store = BaselineStore(tmp_path / "baselines")
    store.register("cam-1", pair.before, at=T0 - timedelta(days=30), by="installer")
    zone = ZoneConfig(
        id="yard", kind=ZoneKind.NO_BUILD, polygon=whole_view(pair.before), dwell_seconds=1
    )
    settings = StructureSettings(
        check_interval_seconds=10, persist_checks=3, persist_span_seconds=30
    )

    def phases() -> list[Phase]:
        watch = StructureWatch(
            "cam-1",
            zone,
            settings,
            EvidenceSettings(),
            store,
            features=parts.features,
            net=parts.net,
            finder=parts.finder,
        )
        events = []
        for i in range(5):
            at = T0 + timedelta(seconds=10 * i)
            events += watch.update(Frame(image=pair.after, index=i, timestamp=at))
        return [e.phase for e in events]

    assert phases() == [Phase.OPENED]
    monkeypatch.setattr(structure_compare, "LOSS_HIDDEN_INTERIOR", 0)
    assert phases() == []  # round 10


def test_a_shed_cutting_a_standing_person_short_from_the_side_is_found(
    parts: LearnedParts,
    sheds_before_people: list[LabelledPair],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pair = sheds_before_people[2]
    assert decide_pair(parts, pair)[0]
    monkeypatch.setattr(structure_features, "_SIDE_SLACK", 0.15)  # round 10's slack
    assert not decide_pair(parts, pair)[0]


@pytest.fixture(scope="module")
def sheds_before_people(parts: LearnedParts, shared_data: Path) -> list[LabelledPair]:
    clip = shared_data / "clips" / CLIP_SPLIT["dev"][0]
    texture = _texture(shared_data / "images" / TEXTURE_IMAGE, "dev")
    rng = np.random.default_rng(SEED + 9)  # as build_set draws them
    dev = names(person_shed_pairs(clip, parts.finder, texture, rng, PERSON_SHED_VIEWS[clip.name]))
    round10 = names(build_round10_look(shared_data, parts.finder)[0])
    return [
        dev["vtest/0 shed before person"],
        round10["jacksboro/0 shed before person"],
        round10["jacksboro/1 shed before person"],  # cut short from the side too
    ]


def test_a_plain_face_hiding_a_standing_person_is_judged_inside_its_outline(
    parts: LearnedParts,
    sheds_before_people: list[LabelledPair],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for pair in sheds_before_people:
        changed, f1 = decide_pair(parts, pair)
        assert changed, pair.name
        assert f1 > 0.5, pair.name
    assert structure_compare.LOSS_HIDDEN_INTERIOR > 0
    assert structure_compare.LOSS_INTERIOR == 0  # not every region: round 10's rule stays off
    monkeypatch.setattr(structure_compare, "LOSS_HIDDEN_INTERIOR", 0)
    assert not any(decide_pair(parts, pair)[0] for pair in sheds_before_people)  # round 10
