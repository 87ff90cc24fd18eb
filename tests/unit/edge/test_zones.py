from __future__ import annotations

import numpy as np

from contracts.sites import ZoneConfig
from edge.zones import PolygonZone
from tests.unit.edge.conftest import tracked


def test_trigger_uses_the_bottom_centre_anchor(zone: ZoneConfig) -> None:
    detections = tracked(
        (1, "car", (150, 150, 250, 200)),  # anchor (200, 200): inside
        (2, "car", (150, 20, 250, 90)),  # anchor (200, 90): above the zone
        (3, "car", (150, 60, 250, 210)),  # top outside, anchor (200, 210) inside
        (4, "car", (280, 150, 400, 200)),  # anchor (340, 200): right of the zone
    )
    assert PolygonZone(zone).trigger(detections).tolist() == [True, False, True, False]


def test_trigger_ignores_classes_the_zone_does_not_watch(zone: ZoneConfig) -> None:
    detections = tracked((1, "person", (150, 150, 250, 200)), (2, "truck", (150, 150, 250, 200)))
    assert PolygonZone(zone).trigger(detections).tolist() == [False, True]


def test_trigger_honours_a_zone_class_list(zone: ZoneConfig) -> None:
    only_people = zone.model_copy(update={"classes": ["person"]})
    detections = tracked((1, "person", (150, 150, 250, 200)), (2, "car", (150, 150, 250, 200)))
    assert PolygonZone(only_people).trigger(detections).tolist() == [True, False]


def test_anchors_and_mask_filtering() -> None:
    detections = tracked((1, "car", (0, 0, 10, 20)), (2, "truck", (10, 10, 30, 50)))
    assert detections.anchors().tolist() == [[5, 20], [20, 50]]
    picked = detections[np.array([False, True])]
    assert len(picked) == 1
    assert picked.tracker_id.tolist() == [2]
    assert picked.names() == ["truck"]
