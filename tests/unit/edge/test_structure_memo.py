"""What a structure comparison keeps from a baseline (edge.structure_compare.BaselineMemo).

A camera's baseline is fixed until a new one is accepted, so a check need not derive its
structure maps, backbone features and detections again: the memo keeps them. The results must
be the very same as without. Real dev DSIFN pair 0_2 and its controls; real detector.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.config import StructureSettings
from edge.detections import Detections, Image
from edge.structure_compare import BaselineMemo, Kept, compare_structure
from edge.structure_controls import every_control
from edge.structure_eval import load_pairs
from edge.structure_features import (
    LearnedParts,
    learned_structure_change,
    transient_boxes_of,
)
from tests.unit.edge.structure_helpers import whole_view


class CountingFinder:
    """The real detector, counting the frames it is asked about."""

    def __init__(self, finder: object) -> None:
        self.finder = finder
        self.calls = 0

    def detect(self, image: Image) -> Detections:
        self.calls += 1
        return self.finder.detect(image)  # type: ignore[attr-defined,no-any-return]


@pytest.fixture(scope="module")
def pair(shared_data: Path) -> tuple[Image, Image]:
    found = {p.name: p for p in load_pairs(shared_data / "structures" / "dsifn")}["0_2.png"]
    return found.before, found.after


def test_a_kept_baseline_gives_the_same_gradient_comparison(pair: tuple[Image, Image]) -> None:
    before, after = pair
    settings = StructureSettings()
    kept = BaselineMemo().of(before)
    # Rain moves the registration's peak: cv2.phaseCorrelate windows its inputs in place, which
    # once changed the kept baseline's registration image after its first use.
    for _, current in [("pair", after), *every_control(before, 7)]:
        alone = compare_structure(before, current, whole_view(before), settings)
        for _ in range(2):
            again = compare_structure(before, current, whole_view(before), settings, kept)
            assert np.array_equal(again.mask, alone.mask)
            assert again.score == alone.score
            assert again.shift == alone.shift
            assert again.conclusive == alone.conclusive


def test_a_kept_baseline_gives_the_same_learned_comparison_with_one_detector_pass(
    parts: LearnedParts, pair: tuple[Image, Image]
) -> None:
    before, after = pair
    settings = StructureSettings()
    counting = CountingFinder(parts.finder)
    kept_parts = LearnedParts(parts.features, counting, parts.net)
    compare = kept_parts.comparison()
    views = [after, *(image for _, image in every_control(before, 11)[:4])]
    for index, current in enumerate(views):
        counting.calls = 0
        change = compare(before, current, whole_view(before), settings)
        assert counting.calls == (2 if index == 0 else 1)  # the baseline's boxes found once
        boxes = transient_boxes_of(parts.finder.detect(current))
        boxes += transient_boxes_of(parts.finder.detect(before))
        alone = learned_structure_change(
            before, current, whole_view(before), settings, parts.features, boxes, parts.net
        )
        assert np.array_equal(change.mask, alone.mask)
        assert change.changed == alone.changed


def test_the_memo_tells_baselines_apart_and_keeps_the_latest_few() -> None:
    rng = np.random.default_rng(3)
    first = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    second = first.copy()
    second[0, 0, 0] ^= 1  # one grey level elsewhere: another baseline
    memo = BaselineMemo(size=1)
    kept = memo.of(first)
    assert kept.get("x", lambda: 1) == 1
    assert memo.of(first.copy()).get("x", lambda: 2) == 1  # the same pixels: kept
    assert memo.of(second).get("x", lambda: 3) == 3
    assert memo.of(first).get("x", lambda: 4) == 4  # pushed out by the second
    assert Kept().get("y", lambda: 5) == 5


def test_the_view_s_ground_is_kept_with_the_baseline_and_the_result_is_the_same(
    parts: LearnedParts, pair: tuple[Image, Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 14: the baseline's median feature vector (the ground the change net's second
    reading takes off both views) is found once per baseline and kept; the comparison gives
    the very same mask as without the memo."""
    import edge.structure_features as structure_features

    assert parts.net is not None
    # Round 12's reading (off since round 14) is what takes the ground off.
    monkeypatch.setattr(structure_features, "GROUND_RELATIVE_CHANCE", 0.5)
    before, after = pair
    settings = StructureSettings()
    boxes = transient_boxes_of(parts.finder.detect(after))
    views = [after, *(image for _, image in every_control(before, 5)[:3])]
    alone = [
        learned_structure_change(
            before, view, whole_view(before), settings, parts.features, boxes, parts.net
        )
        for view in views
    ]
    grounds: list[int] = []
    real = structure_features.view_ground

    def counted(features: np.ndarray) -> np.ndarray:
        grounds.append(1)
        return real(features)

    monkeypatch.setattr(structure_features, "view_ground", counted)
    kept = BaselineMemo().of(before)
    for view, expected in zip(views, alone, strict=True):
        change = learned_structure_change(
            before, view, whole_view(before), settings, parts.features, boxes, parts.net, kept
        )
        assert np.array_equal(change.mask, expected.mask)
        assert change.changed == expected.changed
    assert len(grounds) == 1  # found once, on the first check, then kept
    ground = real(parts.features.of(before))
    rng = np.random.default_rng(14)
    a, b = (rng.normal(size=(96, 8, 8)).astype(np.float32) for _ in range(2))
    assert np.array_equal(
        structure_features.net_chance(parts.net, a, b),
        structure_features.net_chance(parts.net, a, b, real(a)),
    )
    assert ground.shape == (96, 1, 1)
