"""Chinese plate reading: find the plate on a vehicle, read it constrained to the format, vote.

This module is the reader; its parts live beside it: ``plate_regions`` finds plate-like boxes
on a vehicle, ``plate_recognisers`` runs RapidOCR's PP-OCRv4 text recogniser (bundled in its
wheel), ``plate_decoding`` reads only plate-shaped paths from the recogniser's CTC scores, and
``plate_votes`` votes one vehicle's readings across frames.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import cv2
import numpy as np

from contracts.events import BoundingBox
from edge.config import PlateSettings, ReadPass
from edge.detections import FloatArray, Image
from edge.plate_decoding import PlateCandidate, PlateDecoder, decode_plate_scores
from edge.plate_recognisers import (
    REC_HEIGHT,
    CtcRecogniser,
    OnnxRuntimeRecogniser,
    OpenVinoRecogniser,
    build_recogniser,
    rapidocr_recogniser,
)
from edge.plate_regions import find_plate_regions
from edge.plate_votes import PlateVote


def _as_bgr(image: Image, what: str) -> Image:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"{what}: expected a uint8 image array, got {type(image).__name__}")
    if image.ndim == 2:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what}: expected HxW or HxWx3, got shape {image.shape}")
    if image.shape[0] < 4 or image.shape[1] < 8:
        raise ValueError(f"{what}: image too small to read ({image.shape[1]}x{image.shape[0]})")
    return image


class PlateReader:
    """Reads Chinese plates from plate crops or from vehicles in full frames.

    The recogniser is loaded on construction. One instance may serve every camera of a
    gateway: a lock keeps inference one at a time.
    """

    def __init__(self, settings: PlateSettings) -> None:
        self.settings = settings
        self._recogniser = build_recogniser(settings)
        self._decoder = PlateDecoder(self._recogniser.characters)
        self._lock = threading.Lock()

    def recognise(self, crop: Image, read_pass: ReadPass) -> FloatArray:
        """The recogniser's CTC probabilities (time steps x characters) for one crop."""
        resized = cv2.resize(
            crop, (read_pass.text_width, REC_HEIGHT), interpolation=cv2.INTER_CUBIC
        )
        batch = np.zeros((1, 3, REC_HEIGHT, read_pass.input_width), dtype=np.float32)
        # PP-OCR input: CHW scaled to [-1, 1]; padding stays 0 (mid grey), as PP-OCR pads.
        batch[0, :, :, : read_pass.text_width] = resized.transpose(2, 0, 1) / 127.5 - 1.0
        with self._lock:
            probabilities: FloatArray = self._recogniser(batch)[0]
        return probabilities

    def read_plate(self, crop: Image) -> PlateCandidate | None:
        """Read a plate crop; None when no plate reads above min_confidence."""
        crop = _as_bgr(crop, "plate crop")
        best: PlateCandidate | None = None
        for read_pass in self.settings.passes:
            candidate = self._decoder.decode(self.recognise(crop, read_pass))
            if candidate is not None and (best is None or _weakest(candidate) > _weakest(best)):
                best = candidate
            if best is not None and _weakest(best) >= self.settings.retry_below:
                break
        if best is None or best.confidence < self.settings.min_confidence:
            return None
        return best

    def read_vehicle(
        self, frame: Image, vehicle_box: BoundingBox | Sequence[float] | FloatArray
    ) -> PlateCandidate | None:
        """Find the plate on one vehicle of a full frame and read it; None when none reads."""
        frame = _as_bgr(frame, "frame")
        x1, y1, x2, y2 = _box_pixels(vehicle_box, frame.shape[1], frame.shape[0])
        top = y2 - round((y2 - y1) * self.settings.search_lower_share)
        region = frame[top:y2, x1:x2]
        if region.shape[0] < 8 or region.shape[1] < self.settings.min_plate_width:
            return None
        best: PlateCandidate | None = None
        for rx1, ry1, rx2, ry2 in find_plate_regions(region, self.settings)[
            : self.settings.max_candidates
        ]:
            candidate = self.read_plate(region[ry1:ry2, rx1:rx2])
            if candidate is not None and (best is None or candidate.confidence > best.confidence):
                best = candidate
        return best


def _box_pixels(
    box: BoundingBox | Sequence[float] | FloatArray, width: int, height: int
) -> tuple[int, int, int, int]:
    if isinstance(box, BoundingBox):
        values = [box.x1, box.y1, box.x2, box.y2]
    else:
        values = [float(v) for v in box]
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"vehicle box must be 4 finite numbers x1, y1, x2, y2, got {values}")
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"vehicle box corners must be ordered, got {values}")
    return (
        max(0, int(x1)),
        max(0, int(y1)),
        min(width, math.ceil(x2)),
        min(height, math.ceil(y2)),
    )


def _weakest(candidate: PlateCandidate) -> float:
    return min(candidate.char_confidences, default=0.0)


__all__ = [
    "CtcRecogniser",
    "OnnxRuntimeRecogniser",
    "OpenVinoRecogniser",
    "PlateCandidate",
    "PlateDecoder",
    "PlateReader",
    "PlateSettings",
    "PlateVote",
    "ReadPass",
    "build_recogniser",
    "decode_plate_scores",
    "find_plate_regions",
    "rapidocr_recogniser",
]
