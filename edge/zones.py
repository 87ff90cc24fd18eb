"""Polygon zones: which detections stand inside a zone and belong to the classes it watches."""

from __future__ import annotations

import cv2
import numpy as np

from contracts.sites import STATIONARY_OBJECT, ZoneConfig
from edge.detections import BoolArray, Detections, FloatArray


class PolygonZone:
    def __init__(self, config: ZoneConfig) -> None:
        self.config = config
        self.polygon: FloatArray = np.asarray(config.polygon, dtype=np.float32)
        self._classes = frozenset(config.watched_classes)

    def trigger(self, detections: Detections) -> BoolArray:
        """True for each detection of a watched class whose bottom-centre lies in the polygon."""
        contour = self.polygon.reshape(-1, 1, 2)
        mask = np.zeros(len(detections), dtype=np.bool_)
        for i, (x, y) in enumerate(detections.anchors()):
            name = detections.class_name(i)
            if name not in self._classes:
                continue
            if name == STATIONARY_OBJECT:
                mask[i] = True  # found inside this zone's polygon by construction
                continue
            mask[i] = cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0
        return mask
