"""Motion gating: run the detector on a camera's frame only when something in its zones changed.

Most of the time nothing moves in a no-parking zone or a fire lane, so most frames need no
detection. A small blurred grey copy of each frame is compared with the one at the last
detection, counting only pixels inside the union of the camera's zones. Stationary objects
are still re-checked every ``recheck_seconds`` so their dwell keeps being confirmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import cv2
import numpy as np
from numpy.typing import NDArray

from edge.config import MotionSettings
from edge.detections import Frame, Image

Polygon = Sequence[Sequence[float]] | NDArray[np.float32]


class MotionGate:
    """Decides per frame whether one camera's frame needs the detector."""

    def __init__(
        self,
        zone_polygons: Sequence[Polygon],
        frame_size: tuple[int, int],
        settings: MotionSettings,
    ) -> None:
        """zone_polygons in pixels of a frame_size = (width, height) frame; none: whole frame."""
        width, height = frame_size
        if width <= 0 or height <= 0:
            raise ValueError(f"motion gate: frame size must be positive, got {frame_size}")
        if settings.blur % 2 == 0:
            raise ValueError(f"motion gate: blur must be odd, got {settings.blur}")
        self.settings = settings
        small_width = min(settings.width, width)
        self._small_size = (small_width, max(1, round(height * small_width / width)))
        self._mask = self._zone_mask(zone_polygons, frame_size)
        self._mask_pixels = int(np.count_nonzero(self._mask))
        self._reference: Image | None = None
        self._reference_at: datetime | None = None
        self.changed_fraction = 0.0

    def _zone_mask(self, polygons: Sequence[Polygon], frame_size: tuple[int, int]) -> Image:
        small_w, small_h = self._small_size
        if not polygons:
            return np.full((small_h, small_w), 255, dtype=np.uint8)
        scale = np.array([small_w / frame_size[0], small_h / frame_size[1]], dtype=np.float32)
        mask = np.zeros((small_h, small_w), dtype=np.uint8)
        for i, polygon in enumerate(polygons):
            points = np.asarray(polygon, dtype=np.float32)
            if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
                raise ValueError(f"motion gate: zone polygon {i} needs 3+ (x, y) points")
            cv2.fillPoly(mask, [np.round(points * scale).astype(np.int32)], 255)
        if not mask.any():
            raise ValueError(f"motion gate: the zones lie outside the {frame_size} frame")
        return mask

    def _grey(self, image: Image) -> Image:
        small = cv2.resize(image, self._small_size, interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        blur = self.settings.blur
        return np.asarray(cv2.GaussianBlur(grey, (blur, blur), 0), dtype=np.uint8)

    def should_detect(self, frame: Frame) -> bool:
        """True when the zones changed since the last detection, or a re-check is due.

        A True answer makes this frame the new reference: the caller is expected to detect.
        """
        if not self.settings.enabled:
            return True
        grey = self._grey(frame.image)
        if self._reference is None or self._reference_at is None:
            return self._detect_now(grey, frame.timestamp)
        diff = cv2.absdiff(grey, self._reference)
        changed = np.count_nonzero((diff > self.settings.pixel_threshold) & (self._mask > 0))
        self.changed_fraction = changed / self._mask_pixels
        elapsed = (frame.timestamp - self._reference_at).total_seconds()
        # A clock that jumped back also forces a check rather than silence until it catches up.
        due = elapsed >= self.settings.recheck_seconds or elapsed < 0
        if self.changed_fraction >= self.settings.min_changed_fraction or due:
            return self._detect_now(grey, frame.timestamp)
        return False

    def _detect_now(self, grey: Image, at: datetime) -> bool:
        self._reference, self._reference_at = grey, at
        return True
