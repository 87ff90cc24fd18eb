"""The structure change net (edge.structure_net): its numpy inference, its weight files, and
what it changes in the learned comparison.

The net's inference is checked against torch (which trains it, models/structure_change_net.py)
on random weights and random features. The behaviour tests run the shipped weights on real
frames of the dev clips (vtest.avi) and the dev DSIFN pair 0_2; the people and cars pasted in
are real crops the detector is only fairly sure of (edge.structure_dataset.uncertain_crops).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.config import StructureSettings
from edge.detections import Image
from edge.structure_controls import paste_object
from edge.structure_dataset import SEED, clip_pairs, uncertain_crops
from edge.structure_eval import load_pairs, pixel_scores
from edge.structure_features import LearnedParts, learned_parts
from edge.structure_net import (
    BUNDLED_WEIGHTS,
    LAYER_NAMES,
    ChangeNet,
    bundled_change_net,
)


def _whole(image: Image) -> list[list[float]]:
    height, width = image.shape[:2]
    return [[0, 0], [width, 0], [width, height], [0, height]]


def _random_layers(rng: np.random.Generator, hidden: int = 8) -> dict[str, np.ndarray]:
    return {
        "w1": rng.normal(0, 0.2, (hidden, 288)).astype(np.float32),
        "b1": rng.normal(0, 0.1, hidden).astype(np.float32),
        "w2": rng.normal(0, 0.2, (hidden, hidden, 3, 3)).astype(np.float32),
        "b2": rng.normal(0, 0.1, hidden).astype(np.float32),
        "w3": rng.normal(0, 0.2, (1, hidden, 3, 3)).astype(np.float32),
        "b3": rng.normal(0, 0.1, 1).astype(np.float32),
    }


def test_the_numpy_inference_matches_torch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    layers = _random_layers(rng)
    path = tmp_path / "net.npz"
    np.savez(path, **layers)  # type: ignore[arg-type]
    net = ChangeNet.load(path)
    before = rng.normal(0, 1, (96, 24, 32)).astype(np.float32)
    after = before + rng.normal(0, 0.5, before.shape).astype(np.float32)
    after[:, 5:12, 8:20] = rng.normal(0, 1, (96, 7, 12))  # something new in one place

    from edge.structure_net import net_input

    x = torch.from_numpy(net_input(before, after))[None]
    hidden = torch.relu(
        torch.nn.functional.conv2d(
            x, torch.from_numpy(layers["w1"])[:, :, None, None], torch.from_numpy(layers["b1"])
        )
    )
    hidden = torch.relu(
        torch.nn.functional.conv2d(
            hidden, torch.from_numpy(layers["w2"]), torch.from_numpy(layers["b2"]), padding=1
        )
    )
    logit = torch.nn.functional.conv2d(
        hidden, torch.from_numpy(layers["w3"]), torch.from_numpy(layers["b3"]), padding=1
    )
    expected = torch.sigmoid(logit)[0, 0].numpy()
    got = net.probability(before, after)
    assert got.shape == (24, 32)
    assert np.abs(got - expected).max() < 1e-4
    assert got.std() > 0.01  # not a constant map: the comparison above means something


def test_bad_weight_files_are_refused_with_a_reason(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    layers = _random_layers(rng)
    missing = tmp_path / "missing.npz"
    np.savez(missing, **{k: v for k, v in layers.items() if k != "w3"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no w3"):
        ChangeNet.load(missing)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, **{**layers, "w2": np.zeros((8, 8, 5, 5), np.float32)})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="layer w2"):
        ChangeNet.load(wrong)
    text = tmp_path / "text.npz"
    text.write_text("not weights")
    with pytest.raises(ValueError, match="not a change net"):
        ChangeNet.load(text)
    one_array = tmp_path / "one.npy"
    np.save(one_array, layers["w1"])
    with pytest.raises(ValueError, match="one array"):
        ChangeNet.load(one_array)
    # The learned comparison then runs without the net: no exception reaches the gateway.
    assert bundled_change_net(text) is None
    assert bundled_change_net(tmp_path / "absent.npz") is None


def test_the_shipped_weights_are_small_and_load() -> None:
    assert BUNDLED_WEIGHTS.stat().st_size < 5_000_000
    net = bundled_change_net()
    assert net is not None
    assert [getattr(net, name).dtype for name in LAYER_NAMES] == [np.float32] * 6


@pytest.fixture(scope="module")
def parts(model_path: Path) -> LearnedParts:
    found = learned_parts(model_path)
    assert found.net is not None, "learned_parts loads the shipped change net"
    return found


def test_the_net_keeps_the_new_buildings_of_dsifn_0_2(
    shared_data: Path, parts: LearnedParts
) -> None:
    """A dev pair of real imagery the net never trained on (it saw only street scenes)."""
    pair = next(p for p in load_pairs(shared_data / "structures" / "dsifn") if p.name == "0_2.png")
    without = LearnedParts(parts.features, parts.finder)
    settings = StructureSettings()
    for learned in (parts, without):
        change = learned.comparison()(
            pair.before, pair.after, np.array(_whole(pair.before)), settings
        )
        assert change.changed
        assert pixel_scores(change.mask, pair.truth)[2] > 0.6


def test_people_and_cars_the_detector_is_unsure_of_raise_far_less_with_the_net(
    shared_data: Path, parts: LearnedParts
) -> None:
    """The dev set's object stress (bench.structures --object-stress) on its four vtest pairs:
    each of the 12 uncertain crops pasted into the before view (the same seeds), compared with
    that view. Nothing was built. Measured: 20 alarms without the net, 4 with it."""
    texture = np.full((64, 64, 3), 128, np.uint8)  # only the built pairs' after views use it
    pairs = clip_pairs(shared_data / "clips" / "vtest.avi", texture, np.random.default_rng(SEED))
    views = [p.before for p in pairs]
    crops = uncertain_crops("dev", shared_data, parts.finder)
    assert len(crops) == 12
    settings = StructureSettings()

    def alarms(learned: LearnedParts) -> int:
        compare, count = learned.comparison(), 0
        for index, view in enumerate(views):
            rng = np.random.default_rng(103 + index)  # vtest's pairs are the dev set's 4th-7th
            zone = np.array(_whole(view))
            for crop in crops:
                count += compare(view, paste_object(view, crop, rng), zone, settings).changed
        return count

    without = alarms(LearnedParts(parts.features, parts.finder))
    with_net = alarms(parts)
    assert with_net <= 6, (with_net, without)
    if without < 15:
        # Which crops the detector is unsure of follows its numbers, which differ between
        # machines (one with AVX2 and no AVX-512 picked crops that raise 4 alarms without the
        # net, not 20): with so few the reduction cannot be told, only the net's bound above.
        pytest.skip(f"these crops raise only {without} alarms without the net on this machine")
