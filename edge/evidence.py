"""Evidence frames: the zone and the object's box drawn on a frame, as a hashed JPEG."""

from __future__ import annotations

import hashlib
from datetime import datetime

import cv2
import numpy as np

from contracts.events import EvidenceFrame, EvidenceLabel
from edge.config import EvidenceSettings
from edge.detections import FloatArray, Image

ZONE_COLOUR = (0, 200, 255)  # BGR amber
BOX_COLOUR = (0, 0, 255)  # BGR red


def annotate(
    image: Image, zone_polygon: FloatArray, box: FloatArray | None, label_text: str
) -> Image:
    """A copy of the frame with the zone outlined and, when given, the object's box labelled."""
    out = image.copy()
    points = np.round(zone_polygon).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(out, [points], isClosed=True, color=ZONE_COLOUR, thickness=2)
    if box is not None:
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), BOX_COLOUR, 2)
        origin = (x1, max(12, y1 - 6))
    else:
        origin = (8, 20)
    if label_text:
        cv2.putText(
            out, label_text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, BOX_COLOUR, 1, cv2.LINE_AA
        )
    return out


def encode_evidence(
    image: Image, label: EvidenceLabel, captured_at: datetime, settings: EvidenceSettings
) -> EvidenceFrame:
    """JPEG-encode (scaled down to max_width) and hash the exact bytes that go on the wire."""
    height, width = image.shape[:2]
    if width > settings.max_width:
        scale = settings.max_width / width
        size = (settings.max_width, max(1, round(height * scale)))
        image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        height, width = image.shape[:2]
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality])
    if not ok:
        raise ValueError(f"could not JPEG-encode a {width}x{height} evidence frame")
    data = buffer.tobytes()
    return EvidenceFrame(
        label=label,
        captured_at=captured_at,
        sha256=hashlib.sha256(data).hexdigest(),
        width=width,
        height=height,
        data=data,
    )
