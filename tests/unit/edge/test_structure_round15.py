"""Round 15 of the structure comparison (issue 16). Round 15's fresh look
(`edge.structure_dataset.build_round15_look`, `bench.structures --set round15`) draws on sources
no set, look, training run or test did: scikit-learn's handwritten digits and matplotlib's
Stocks.csv prices rendered as aerial ground, sheds faced with networkx's test_display_complex.png.

The look's grounds are real data RENDERED as aerial ground and its sheds are composited in:
GENERATED (edge.structure_dataset).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.structure_dataset import (
    ROUND15_GROUNDS,
    ROUND15_TEXTURE,
    build_round14_look,
    build_round15_look,
    networkx_drawing,
    round15_ground,
    used_sources,
)
from edge.structure_features import LearnedParts
from tests.unit.edge.structure_helpers import assert_look_of_fourteen, assert_rendered_ground


def test_round15_look_draws_on_what_no_round_used(parts: LearnedParts, shared_data: Path) -> None:
    assert not {*ROUND15_GROUNDS, ROUND15_TEXTURE} & used_sources("round15")
    assert used_sources("round15") < used_sources()
    for name in ROUND15_GROUNDS:
        assert_rendered_ground(round15_ground(name))
    assert networkx_drawing(ROUND15_TEXTURE).is_file()
    pairs, stress = build_round15_look(shared_data, parts.finder)
    assert_look_of_fourteen(pairs, stress, build_round15_look(shared_data, parts.finder)[0])
    assert sum(p.name.endswith("shed before person") for p in pairs) == 4
    assert sum(p.name.endswith("shed beside car") for p in pairs) == 4
    assert sum(p.name.endswith("smooth shed") for p in pairs) == 2
    earlier = build_round14_look(shared_data, parts.finder)[0]
    assert not any(np.array_equal(a.before, b.before) for a in pairs for b in earlier)
