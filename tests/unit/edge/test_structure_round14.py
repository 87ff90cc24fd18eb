"""Round 14 of the structure comparison (issue 16): a second change net, trained on the dev
looks' varied grounds as well (models/structure_change_net.py ``--recipe round14``), ships
beside round 4's (`ChangeNet.varied`) and counts from `VARIED_CHANCE`; round 12's reading
against the ground is off. Round 14's fresh look
(`edge.structure_dataset.build_round14_look`, `bench.structures --set round14`) draws on
sources no set, look, training run or test did; the baseline's ground is kept in the memo
(tests/unit/edge/test_structure_memo.py).

The look's grounds are real traces RENDERED as aerial ground and its sheds are composited in:
GENERATED (edge.structure_dataset).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edge.structure_features as structure_features
from edge.structure_dataset import (
    ROUND14_GROUNDS,
    ROUND14_TEXTURE,
    build_round11b_look,
    build_round12_look,
    build_round14_look,
    matplotlib_sample,
    networkx_drawing,
    round14_ground,
    used_sources,
)
from edge.structure_features import LearnedParts
from edge.structure_net import BUNDLED_WEIGHTS, LAYER_NAMES, VARIED_PREFIX, ChangeNet
from tests.unit.edge.structure_helpers import (
    assert_look_of_fourteen,
    assert_rendered_ground,
    decide_pair,
    names,
)


def test_round14_look_draws_on_what_no_round_used(parts: LearnedParts, shared_data: Path) -> None:
    assert not {*ROUND14_GROUNDS, ROUND14_TEXTURE} & used_sources("round14")
    assert used_sources("round14") < used_sources()
    for name in ROUND14_GROUNDS:
        assert matplotlib_sample(name).is_file()
        assert_rendered_ground(round14_ground(name))
    assert networkx_drawing(ROUND14_TEXTURE).is_file()
    pairs, stress = build_round14_look(shared_data, parts.finder)
    assert_look_of_fourteen(pairs, stress, build_round14_look(shared_data, parts.finder)[0])
    assert sum(p.name.endswith("shed before person") for p in pairs) == 4
    assert sum(p.name.endswith("smooth shed") for p in pairs) == 2
    earlier = build_round12_look(shared_data, parts.finder)[0]
    assert not any(np.array_equal(a.before, b.before) for a in pairs for b in earlier)


def test_sheds_on_paving_the_first_net_never_saw_are_read_by_the_varied_ground_net(
    parts: LearnedParts, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 11b's tiled paving (dev): the first net, and round 12's reading against the
    ground, gave these two sheds a chance near 0 (F1 0.09 and 0.25, decided unchanged); the
    net trained on varied ground as well finds them, and the still pair beside them stays
    clean."""
    assert parts.net is not None
    assert parts.net.varied is not None
    paving = names(build_round11b_look(shared_data, parts.finder)[0])
    sheds = [paving["paving/0 smooth shed"], paving["paving/3 shed beside car"]]
    for pair in sheds:
        changed, f1 = decide_pair(parts, pair)
        assert changed, pair.name
        assert f1 > 0.6, pair.name
    assert decide_pair(parts, paving["paving/1 person and car moved"]) == (False, 1.0)
    monkeypatch.setattr(structure_features, "VARIED_CHANCE", None)
    assert not any(decide_pair(parts, pair)[0] for pair in sheds)
    monkeypatch.setattr(structure_features, "GROUND_RELATIVE_CHANCE", 0.5)  # round 12's rule
    assert not any(decide_pair(parts, pair)[0] for pair in sheds)


def test_the_varied_ground_net_only_adds_from_its_level(parts: LearnedParts) -> None:
    net = parts.net
    assert net is not None
    assert net.varied is not None
    assert structure_features.GROUND_RELATIVE_CHANCE is None
    rng = np.random.default_rng(14)
    before = rng.normal(size=(96, 8, 8)).astype(np.float32) + 2.0
    after = before.copy()
    after[:, 2:5, 2:5] = rng.normal(size=(96, 3, 3)) * 3
    first, varied = net.probability(before, after), net.varied.probability(before, after)
    chance = structure_features.net_chance(net, before, after)
    assert chance.dtype == np.float32
    level = structure_features.VARIED_CHANCE
    assert level is not None
    assert np.array_equal(chance, np.maximum(first, np.where(varied >= level, varied, 0)))


def test_a_weight_file_with_part_of_a_varied_net_is_refused(tmp_path: Path) -> None:
    with np.load(BUNDLED_WEIGHTS) as shipped:
        layers = {name: shipped[name] for name in shipped.files}
    assert {VARIED_PREFIX + name for name in LAYER_NAMES} <= set(layers)
    del layers[VARIED_PREFIX + "w2"]
    path = tmp_path / "part.npz"
    np.savez(path, **layers)
    with pytest.raises(ValueError, match="no varied_w2"):
        ChangeNet.load(path)
    first_only = tmp_path / "first.npz"
    np.savez(first_only, **{n: layers[n] for n in LAYER_NAMES})
    assert ChangeNet.load(first_only).varied is None  # round 4's file alone: no second net
