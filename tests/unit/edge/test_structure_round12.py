"""Round 12 of the structure comparison (issue 16): the change net also reads the change against
the view's own ground (`edge.structure_features.GROUND_RELATIVE_CHANCE`, `net_chance`); round
11's two looks are dev now
(`edge.structure_dataset.build_dev_all`, `bench.structures --set dev-all`: 111 pairs), and
round 12's fresh look (`build_round12_look`) draws on sources no set, look, training run or
test did.

The look's grounds are a seeded random field and real EEG traces RENDERED as aerial ground and
its sheds are composited in: GENERATED (edge.structure_dataset).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edge.structure_features as structure_features
from edge.structure_dataset import (
    ROUND12_GROUNDS,
    ROUND12_TEXTURE,
    build_dev_all,
    build_round11_look,
    build_round11b_look,
    build_round12_look,
    matplotlib_sample,
    networkx_drawing,
    round12_ground,
    used_sources,
)
from edge.structure_features import LearnedParts
from tests.unit.edge.structure_helpers import (
    assert_look_of_fourteen,
    assert_rendered_ground,
    decide_pair,
    names,
)


def test_round12_look_draws_on_what_no_round_used(parts: LearnedParts, shared_data: Path) -> None:
    assert not {*ROUND12_GROUNDS, ROUND12_TEXTURE} & used_sources("round12")
    assert used_sources("round12") < used_sources()
    assert matplotlib_sample(ROUND12_GROUNDS[1]).is_file()
    assert networkx_drawing(ROUND12_TEXTURE).is_file()
    for name in ROUND12_GROUNDS:
        assert_rendered_ground(round12_ground(name))
    pairs, stress = build_round12_look(shared_data, parts.finder)
    assert_look_of_fourteen(pairs, stress, build_round12_look(shared_data, parts.finder)[0])
    assert sum(p.name.endswith("shed before person") for p in pairs) == 4
    assert sum(p.name.endswith("smooth shed") for p in pairs) == 2
    earlier = build_round11_look(shared_data, parts.finder)[0]
    earlier += build_round11b_look(shared_data, parts.finder)[0]
    assert not any(np.array_equal(a.before, b.before) for a in pairs for b in earlier)


def test_dev_holds_round11s_two_looks(parts: LearnedParts, shared_data: Path) -> None:
    dev = build_dev_all(shared_data, parts.finder)
    assert [len(pairs) for pairs, _ in dev] == [47, 12, 10, 14, 14, 14]
    assert sum(len(pairs) for pairs, _ in dev) == 111
    for part, build in ((dev[4], build_round11_look), (dev[5], build_round11b_look)):
        look, stress = build(shared_data, parts.finder)
        assert [p.name for p in part[0]] == [p.name for p in look]
        assert all(np.array_equal(a.after, b.after) for a, b in zip(part[0], look, strict=True))
        assert len(part[1]) == len(stress) > 0


def test_sheds_on_ground_the_net_never_saw_are_read_against_that_ground(
    parts: LearnedParts, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 11b's tiled paving: the net as trained gives these sheds a chance near 0 (the
    gradient finds them); read against the paving it finds them. Round 12's rule as it
    shipped (round 14 turned it off for the varied-ground net: test_structure_round14.py)."""
    monkeypatch.setattr(structure_features, "GROUND_RELATIVE_CHANCE", 0.5)
    monkeypatch.setattr(structure_features, "VARIED_CHANCE", None)
    paving = names(build_round11b_look(shared_data, parts.finder)[0])
    sheds = [paving["paving/1 smooth shed"], paving["paving/3 shed before person"]]
    for pair in sheds:
        changed, f1 = decide_pair(parts, pair)
        assert changed, pair.name
        assert f1 > 0.4, pair.name
    still = paving["paving/1 person and car moved"]
    assert decide_pair(parts, still) == (False, 1.0)
    monkeypatch.setattr(structure_features, "GROUND_RELATIVE_CHANCE", None)
    assert not any(decide_pair(parts, pair)[0] for pair in sheds)  # round 11: thrown away


def test_the_ground_relative_reading_only_adds_to_the_net_s_chance(
    parts: LearnedParts, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parts.net is not None
    monkeypatch.setattr(structure_features, "GROUND_RELATIVE_CHANCE", 0.5)
    monkeypatch.setattr(structure_features, "VARIED_CHANCE", None)
    rng = np.random.default_rng(12)
    before = rng.normal(size=(96, 8, 8)).astype(np.float32) + 2.0
    after = before.copy()
    after[:, 2:5, 2:5] = rng.normal(size=(96, 3, 3)) * 3
    trained = parts.net.probability(before, after)
    chance = structure_features.net_chance(parts.net, before, after)
    assert chance.shape == trained.shape
    assert np.all(chance >= trained)
    level = structure_features.GROUND_RELATIVE_CHANCE
    assert level is not None
    raised = chance > trained
    assert np.all(chance[raised] >= level)  # below the level the ground reading adds nothing
