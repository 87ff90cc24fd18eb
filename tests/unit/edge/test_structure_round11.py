"""Round 11 of the structure comparison (issue 16): a region the passers-by's boxes discounted is
judged again without the boxes' part (`edge.structure_features.BOX_REMAINDER`); round 10's look
is dev now (`edge.structure_dataset.build_dev_all`, `bench.structures --set dev-all`: 83 pairs),
and round 11's fresh look (`build_round11_look`) draws on sources no set, look, training run or
test did.

Dev's vtest/0 smooth shed: a plain painted shed whose changed region merged with a walking
man of the before view, so his box (his content changed: he walked off) discounted the whole
region, shed and all.

The look's grounds are real data (an MRI slice, face photos) RENDERED as aerial ground and its
sheds are composited in: GENERATED (edge.structure_dataset).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edge.structure_features as structure_features
from edge.structure_dataset import (
    CLIP_SPLIT,
    ROUND11_GROUNDS,
    ROUND11_TEXTURE,
    SEED,
    SMOOTH_SHED_VIEWS,
    build_dev_all,
    build_round10_look,
    build_round11_look,
    matplotlib_sample,
    round11_ground,
    skimage_data,
    smooth_shed_pairs,
    used_sources,
)
from edge.structure_features import LearnedParts
from tests.unit.edge.structure_helpers import decide_pair, names


def test_round11_look_draws_on_what_no_round_used(parts: LearnedParts, shared_data: Path) -> None:
    assert not {*ROUND11_GROUNDS, ROUND11_TEXTURE} & used_sources("round11")
    assert used_sources("round11") < used_sources()
    assert matplotlib_sample(ROUND11_GROUNDS[0]).is_file()
    assert (skimage_data() / ROUND11_GROUNDS[1]).is_file()
    assert (skimage_data() / ROUND11_TEXTURE).is_file()
    for name in ROUND11_GROUNDS:
        ground = round11_ground(name)
        assert min(ground.shape[:2]) >= 256
        assert ground.dtype == np.uint8
        assert float(ground.std()) > 10  # rendered ground, not a flat fill
    pairs, stress = build_round11_look(shared_data, parts.finder)
    assert len(pairs) == 14
    assert sum(p.source == "still" for p in pairs) == 4
    assert sum(p.name.endswith("shed before person") for p in pairs) == 4
    assert sum(p.name.endswith("smooth shed") for p in pairs) == 2
    for pair in pairs:
        assert pair.before.shape == pair.after.shape == (256, 256, 3)
        assert pair.truth.any() == (pair.source == "built")
        assert {"person in view", "car in view", "night IR"} <= {n for n, _ in pair.controls}
    assert 0 < len(stress) <= 12
    again, _ = build_round11_look(shared_data, parts.finder)
    assert all(np.array_equal(a.after, b.after) for a, b in zip(pairs, again, strict=True))
    round10, _ = build_round10_look(shared_data, parts.finder)
    assert not any(np.array_equal(a.before, b.before) for a in pairs for b in round10)


def test_dev_holds_round10_look(parts: LearnedParts, shared_data: Path) -> None:
    dev = build_dev_all(shared_data, parts.finder)
    assert [len(pairs) for pairs, _ in dev] == [47, 12, 10, 14]
    assert sum(len(pairs) for pairs, _ in dev) == 83
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
    monkeypatch.setattr(structure_features, "BOX_REMAINDER", 0)
    assert decide_pair(parts, pair) == (False, 0.0)  # round 10: his box discounted it all
