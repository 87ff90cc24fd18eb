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
