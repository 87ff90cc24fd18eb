from __future__ import annotations

import hashlib

import cv2
import numpy as np

from contracts.events import CAPTION_HEIGHT, EvidenceFrame, EvidenceLabel
from edge.config import EvidenceSettings
from edge.evidence import BOX_COLOUR, ZONE_COLOUR, annotate, encode_evidence
from tests.unit.edge.conftest import T0


def test_encoded_evidence_hash_matches_the_exact_jpeg_bytes() -> None:
    image = np.zeros((480, 1920, 3), dtype=np.uint8)
    polygon = np.array([[10, 10], [200, 10], [200, 200]], dtype=np.float32)
    box = np.array([20, 60, 100, 150], dtype=np.float32)
    drawn = annotate(image, polygon, box, "car #1", "2026-11-26 08:00:00 UTC  cam-1  lane  entry")
    assert not image.any(), "annotate must not draw on the caller's frame"
    assert drawn.shape == (480 + CAPTION_HEIGHT, 1920, 3), "the caption band sits above the frame"
    assert drawn[:CAPTION_HEIGHT].any(), "the caption is written"
    picture = drawn[CAPTION_HEIGHT:]
    assert tuple(picture[150, 60]) == BOX_COLOUR, "the box's bottom edge"
    assert tuple(picture[10, 150]) == ZONE_COLOUR, "the zone's top edge"
    assert not picture[300:, 1000:].any(), "nothing drawn away from zone and box"

    frame = encode_evidence(drawn, EvidenceLabel.ENTRY, T0, EvidenceSettings(max_width=960))

    assert frame.sha256 == hashlib.sha256(frame.data).hexdigest()
    assert frame.data[:2] == b"\xff\xd8", "JPEG magic"
    assert (frame.width, frame.height) == (960, 251)
    decoded = cv2.imdecode(np.frombuffer(frame.data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    assert decoded.shape == (251, 960, 3)
    # The frame survives the wire: the receiving side re-validates the hash.
    assert EvidenceFrame.model_validate_json(frame.model_dump_json()) == frame
