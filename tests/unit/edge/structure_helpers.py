"""Helpers the structure comparison's tests share (issue 16): a zone over the whole view, and
one learned decision with its pixel F1."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.config import StructureSettings
from edge.structure_compare import StructureChange
from edge.structure_dataset import LabelledPair
from edge.structure_eval import pixel_scores
from edge.structure_features import LearnedParts


def whole_view(image: np.ndarray) -> list[list[float]]:
    """The zone polygon covering the whole view."""
    height, width = image.shape[:2]
    return [[0, 0], [width, 0], [width, height], [0, height]]


def change(parts: LearnedParts, before: np.ndarray, after: np.ndarray) -> StructureChange:
    """The learned comparison of two views, as a watch runs it (nothing kept)."""
    compare = LearnedParts(parts.features, parts.finder, parts.net).comparison()
    return compare(before, after, whole_view(before), StructureSettings())


def decide(parts: LearnedParts, before: np.ndarray, after: np.ndarray) -> bool:
    """The learned comparison's decision on two views."""
    return change(parts, before, after).changed


def decide_pair(parts: LearnedParts, pair: LabelledPair) -> tuple[bool, float]:
    """The learned comparison's decision on a pair, and its pixel F1 against the truth."""
    found = change(parts, pair.before, pair.after)
    return found.changed, pixel_scores(found.mask, pair.truth)[2]


def names(pairs: Sequence[LabelledPair]) -> dict[str, LabelledPair]:
    """Pairs by name."""
    return {p.name: p for p in pairs}


def assert_rendered_ground(ground: np.ndarray) -> None:
    """A look's ground: at least a view's size, 8-bit, and textured rather than a flat fill."""
    assert min(ground.shape[:2]) >= 256
    assert ground.dtype == np.uint8
    assert float(ground.std()) > 10


def assert_look_of_fourteen(
    pairs: Sequence[LabelledPair], stress: Sequence[object], again: Sequence[LabelledPair]
) -> None:
    """A fresh look as rounds 10-12 build it: 14 pairs of 256x256 views (4 still, the rest
    built with truth), each with its no-change controls, at most 12 stress crops, and the same
    pixels when built again (seeded)."""
    assert len(pairs) == 14
    assert sum(p.source == "still" for p in pairs) == 4
    for pair in pairs:
        assert pair.before.shape == pair.after.shape == (256, 256, 3)
        assert pair.truth.any() == (pair.source == "built")
        assert {"person in view", "car in view", "night IR"} <= {n for n, _ in pair.controls}
    assert 0 < len(stress) <= 12
    assert all(np.array_equal(a.after, b.after) for a, b in zip(pairs, again, strict=True))
