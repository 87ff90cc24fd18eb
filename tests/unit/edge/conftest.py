"""Edge-only fixtures: a zone, small frames and hand-built tracked detections."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from contracts.events import Phase, ViolationEvent, ViolationKind
from contracts.sites import ZoneConfig, ZoneKind
from edge.detections import Detections, Frame

if TYPE_CHECKING:
    from edge.structure_features import LearnedParts

COCO = {0: "person", 2: "car", 7: "truck"}
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
SITE, GATEWAY, CAMERA = "site-a", "gw-1", "cam-1"


def cleared_event(sequence: int = 0) -> ViolationEvent:
    """A small valid event (cleared phases need no evidence) for outbox and publisher tests."""
    return ViolationEvent(
        message_id=uuid.uuid4(),
        violation_id=uuid.uuid4(),
        sequence=sequence,
        phase=Phase.CLEARED,
        kind=ViolationKind.ILLEGAL_PARKING,
        site_id=SITE,
        gateway_id=GATEWAY,
        camera_id=CAMERA,
        zone_id="z1",
        started_at=T0,
        observed_at=T0 + timedelta(seconds=90),
        dwell_seconds=80.0,
    )


@pytest.fixture
def zone() -> ZoneConfig:
    return ZoneConfig(
        id="gate-no-parking",
        kind=ZoneKind.NO_PARKING,
        polygon=[[100, 100], [300, 100], [300, 220], [100, 220]],
        dwell_seconds=30,
    )


def frame_at(seconds: float, index: int = 0) -> Frame:
    image = np.full((240, 320, 3), 90, dtype=np.uint8)
    return Frame(image=image, index=index, timestamp=T0 + timedelta(seconds=seconds))


def tracked(*objects: tuple[int, str, tuple[float, float, float, float]]) -> Detections:
    """Detections from (track_id, class_name, xyxy) triples."""
    ids = {name: cid for cid, name in COCO.items()}
    return Detections.create(
        xyxy=[box for _, _, box in objects] or np.zeros((0, 4)),
        confidence=[0.9] * len(objects),
        class_id=[ids[name] for _, name, _ in objects],
        class_names=COCO,
        tracker_id=[track_id for track_id, _, _ in objects],
    )


@pytest.fixture(scope="module")
def parts(model_path: Path) -> LearnedParts:
    """The structure comparison's learned parts (backbone features, detector, change net)."""
    from edge.structure_features import learned_parts

    return learned_parts(model_path)
