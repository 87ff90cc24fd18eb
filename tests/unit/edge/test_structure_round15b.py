"""Round 15b of the structure comparison (issue 16): the learned maps (the backbone and both
change nets) are computed only where a result needs them again. Round 15 computed them before
compare_structure on every check once the varied-ground net was loaded, because the loss cue
may ask for that net's reading (`LOSS_SURE_CHANCE`); now the loss cue asks for it (`sure`, a
callable) only for a region whose verdict differs inside its outline and over the whole
region, and the maps are computed once, then, for the steps after it. Results are the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.config import StructureSettings
from edge.detections import Image
from edge.structure_compare import compare_structure
from edge.structure_controls import every_control
from edge.structure_dataset import build_round11b_look
from edge.structure_eval import CONTROL_SEED, load_pairs, pixel_scores
from edge.structure_features import BackboneFeatures, LearnedParts
from tests.unit.edge.structure_helpers import names, whole_view


class CountingFeatures(BackboneFeatures):
    """The backbone, counting its passes."""

    def __init__(self, model_folder: Path) -> None:
        super().__init__(model_folder)
        self.passes = 0

    def of(self, image: Image) -> np.ndarray:
        self.passes += 1
        return super().of(image)


class Asked:
    """A `sure` map handed over lazily, counting how often it was asked for."""

    def __init__(self, chance: float, shape: tuple[int, int]) -> None:
        self.map = np.full(shape, chance, np.float32)
        self.calls = 0

    def __call__(self) -> np.ndarray:
        self.calls += 1
        return self.map


def test_the_learned_maps_are_not_computed_on_a_check_that_does_not_need_them(
    parts: LearnedParts, model_path: Path, shared_data: Path
) -> None:
    """An unchanged view, and DSIFN's controls where the gradient comparison finds nothing and
    the loss cue never asks for the varied net's reading: no backbone pass (round 15 made two
    on each), and the result is what the gradient comparison gave."""
    assert parts.net is not None
    assert parts.net.varied is not None
    features = CountingFeatures(model_path)
    settings = StructureSettings()
    before = load_pairs(shared_data / "structures" / "dsifn")[0].before
    views = [before.copy()] + [view for _, view in every_control(before, CONTROL_SEED)]
    quiet = 0
    for view in views:
        zone = whole_view(before)
        asked = Asked(1.0, before.shape[:2])
        plain = compare_structure(before, view, zone, settings, sure=asked)
        if plain.mask.any() or asked.calls:
            continue
        quiet += 1
        found = LearnedParts(features, parts.finder, parts.net).comparison()(
            before, view, zone, settings
        )
        assert features.passes == 0
        assert not found.mask.any()
        assert found.conclusive == plain.conclusive
    assert quiet >= 8


def test_a_check_that_needs_the_varied_reading_gets_it_and_the_same_mask(
    parts: LearnedParts, model_path: Path, shared_data: Path
) -> None:
    """Round 11b's paving/0 shed beside a parked car needs the varied net's reading (round 15):
    handed over lazily it is asked for once and gives the mask the map itself gives; the
    learned comparison runs the backbone for it and finds the shed; a map not sure of it
    leaves the shed unfound either way."""
    pair = names(build_round11b_look(shared_data, parts.finder)[0])["paving/0 shed beside car"]
    settings = StructureSettings()
    zone = whole_view(pair.before)
    for chance, found in ((0.9, True), (0.4, False)):
        asked = Asked(chance, pair.before.shape[:2])
        lazy = compare_structure(pair.before, pair.after, zone, settings, sure=asked)
        eager = compare_structure(pair.before, pair.after, zone, settings, sure=asked.map)
        assert asked.calls == 1
        assert np.array_equal(lazy.mask, eager.mask)
        assert lazy.score == eager.score
        assert lazy.changed is found
    features = CountingFeatures(model_path)
    learned = LearnedParts(features, parts.finder, parts.net).comparison()
    change = learned(pair.before, pair.after, zone, settings)
    assert features.passes == 2  # the baseline and the current view, once each
    assert change.changed
    assert pixel_scores(change.mask, pair.truth)[2] > 0.6
