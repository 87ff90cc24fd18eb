"""The evidence frames a zone's violations carry: captioned panoramas, a close-up, the cleared view.

The dwell rule decides when a violation opens, updates or clears; this module draws what it
shows. The close-up's crop geometry lives here too, because redaction and the training-data
export must cut the same region from a raw frame.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

import cv2
import numpy as np

from contracts.events import CLOSEUP_MARGIN, EvidenceFrame, EvidenceLabel, PlateReading
from edge.config import EvidenceSettings
from edge.detections import FloatArray, Frame, Image
from edge.evidence import annotate, caption_band, caption_text, encode_evidence
from edge.zones import PolygonZone


class ViolationEvidence:
    """Draws one camera zone's evidence frames, each captioned with the site's local time, the
    camera and the zone (what the frame shows is its label on the wire, not burnt-in words)."""

    def __init__(
        self,
        camera_id: str,
        zone: PolygonZone,
        settings: EvidenceSettings,
        timezone: tzinfo = UTC,
    ) -> None:
        self.camera_id = camera_id
        self.zone = zone
        self._settings = settings
        self._timezone = timezone

    def panorama(
        self, frame: Frame, box: FloatArray, box_label: str, label: EvidenceLabel
    ) -> EvidenceFrame:
        """The whole frame with the zone and the object's labelled box drawn on it."""
        at = frame.timestamp
        image = annotate(frame.image, self.zone.polygon, box, box_label, self.caption(at))
        return encode_evidence(image, label, at, self._settings)

    def closeup(self, frame: Frame, box: FloatArray, plate: PlateReading | None) -> EvidenceFrame:
        """The vehicle cropped from the raw frame, enlarged so its plate can be read."""
        at = frame.timestamp
        crop = crop_with_margin(frame.image, box, margin=CLOSEUP_MARGIN)
        if crop.shape[1] < self._settings.closeup_min_width:
            scale = self._settings.closeup_min_width / crop.shape[1]
            size = (self._settings.closeup_min_width, max(1, round(crop.shape[0] * scale)))
            crop = np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC), np.uint8)
        caption = self.caption(at, *((plate.text,) if plate is not None else ()))
        return encode_evidence(
            caption_band(crop, caption), EvidenceLabel.CLOSEUP, at, self._settings
        )

    def cleared(self, frame: Frame) -> EvidenceFrame:
        """The zone as it stands once the object has gone: no box."""
        caption = self.caption(frame.timestamp)
        image = annotate(frame.image, self.zone.polygon, None, "", caption)
        return encode_evidence(image, EvidenceLabel.CLEARED, frame.timestamp, self._settings)

    def caption(self, at: datetime, *extra: str) -> str:
        # What the frame shows is its label on the wire, in words the page translates.
        return caption_text(at, self._timezone, self.camera_id, self.zone.config.id, *extra)


def crop_with_margin(image: Image, box: FloatArray, margin: float) -> Image:
    """The box widened by a share of its size on each side, clipped to the image."""
    left, top, right, bottom = margin_region(image.shape[:2], box, margin)
    return image[top:bottom, left:right]


def margin_region(
    shape: tuple[int, ...], box: FloatArray, margin: float
) -> tuple[int, int, int, int]:
    """What crop_with_margin cuts from an image of this (height, width): x1, y1, x2, y2."""
    height, width = shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, int(x1 - dx)), max(0, int(y1 - dy))
    right, bottom = min(width, int(np.ceil(x2 + dx))), min(height, int(np.ceil(y2 + dy)))
    if right <= left or bottom <= top:
        raise ValueError(f"box {box.tolist()} lies outside the {width}x{height} frame")
    return left, top, right, bottom
