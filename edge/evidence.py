"""Evidence frames: the zone and the object's box drawn on a frame, as a hashed JPEG."""

from __future__ import annotations

import hashlib
from datetime import datetime, tzinfo

import cv2
import numpy as np

from contracts.events import CAPTION_HEIGHT, EvidenceFrame, EvidenceLabel
from edge.config import EvidenceSettings
from edge.detections import FloatArray, Image

ZONE_COLOUR = (0, 200, 255)  # BGR amber
BOX_COLOUR = (0, 0, 255)  # BGR red


CAPTION_BACKGROUND = (40, 40, 40)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_CAPTION_SEPARATOR = "  "


def caption_text(at: datetime, zone: tzinfo, *names: str) -> str:
    """A caption with no words in any language: the site's local time with its offset, then ids.

    ``2026-12-03 19:40:12 +08:00  cam-gate  fire-lane-gate``: the offset makes the time
    unambiguous to anyone reading a forwarded picture; the ids are config names, not words.
    OpenCV's Hershey font draws ASCII only, so anything else in a name is left out.
    """
    local = at.astimezone(zone)
    offset = local.strftime("%z")  # +0800
    stamp = f"{local:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]}"
    printable = (_ascii(name) for name in names)
    return _CAPTION_SEPARATOR.join([stamp, *(name for name in printable if name)])


def _ascii(text: str) -> str:
    return "".join(ch for ch in text if " " <= ch <= "~").strip()


def annotate(
    image: Image,
    zone_polygon: FloatArray,
    box: FloatArray | None,
    box_label: str,
    caption: str,
) -> Image:
    """The frame with the zone outlined, the object's box labelled, and a caption band on top.

    The caption (time, camera, zone, what the frame shows) is burnt in so a printed or forwarded
    frame still says where and when it was taken; the band is added above the picture rather
    than over it, so it hides nothing the camera saw.
    """
    picture = image.copy()
    points = np.round(zone_polygon).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(picture, [points], isClosed=True, color=ZONE_COLOUR, thickness=2)
    if box is not None:
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(picture, (x1, y1), (x2, y2), BOX_COLOUR, 2)
        if box_label:
            (width, height), baseline = cv2.getTextSize(box_label, _FONT, 0.45, 1)
            y = max(height + 4, y1 - 4)
            x = max(0, min(x1, picture.shape[1] - width - 4))  # keep the label inside the frame
            top_left, bottom_right = (x, y - height - 4), (x + width + 4, y + baseline)
            cv2.rectangle(picture, top_left, bottom_right, BOX_COLOUR, thickness=-1)
            white = (255, 255, 255)
            cv2.putText(picture, box_label, (x + 2, y), _FONT, 0.45, white, 1, cv2.LINE_AA)
    return caption_band(picture, caption)


def caption_band(picture: Image, caption: str) -> Image:
    """The picture with the caption in a band above it."""
    band = np.full((CAPTION_HEIGHT, picture.shape[1], 3), CAPTION_BACKGROUND, dtype=np.uint8)
    cv2.putText(band, caption, (6, 16), _FONT, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([band, picture])


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
