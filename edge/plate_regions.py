"""Finding plates on a vehicle: plate colours, dense vertical edges, a plate's aspect ratio."""

from __future__ import annotations

import cv2
import numpy as np

from edge.config import PlateSettings
from edge.detections import Image, box_iou

# OpenCV HSV (H in 0..179): blue ordinary, yellow large/old, green new-energy plates.
_PLATE_HUES: tuple[tuple[int, int], ...] = ((88, 135), (15, 35), (40, 87))


Box = tuple[int, int, int, int]


def find_plate_regions(region: Image, settings: PlateSettings) -> list[Box]:
    """Plate-like boxes (x1, y1, x2, y2) in a vehicle's lower part, most plate-like first.

    Candidates come from plate-coloured blobs and, for dark or washed-out plates, from blobs of
    dense vertical edges (characters); both must have a plate's shape and dense edges inside.
    """
    hsv = cv2.cvtColor(region, cv2.COLOR_BGR2HSV)
    grey = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY)
    strong = (np.abs(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)) > 60).astype(np.uint8)
    h, w = grey.shape
    # Wide enough to bridge the gaps between characters, of which a plate has 7 or 8.
    bridge = cv2.getStructuringElement(cv2.MORPH_RECT, (max(3, w // 20), max(3, h // 40)))
    masks = [cv2.inRange(hsv, (low, 50, 30), (high, 255, 255)) for low, high in _PLATE_HUES]
    masks.append(strong * 255)
    scored: list[tuple[float, Box]] = []
    for mask in masks:
        closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, bridge)
        contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            bx, by, bw, bh = cv2.boundingRect(contour)
            if bw < settings.min_plate_width or bh < 8 or not 2.0 <= bw / bh <= 6.5:
                continue
            fill = cv2.contourArea(contour) / float(bw * bh)
            edge_density = float(strong[by : by + bh, bx : bx + bw].mean())
            if fill < 0.35 or edge_density < 0.08:
                continue
            aspect_fit = 1.0 - min(abs(bw / bh - 3.3) / 3.3, 1.0)
            score = fill * min(edge_density, 0.4) * (0.5 + aspect_fit)
            scored.append((score, (bx, by, bx + bw, by + bh)))
    scored.sort(key=lambda item: item[0], reverse=True)
    kept: list[Box] = []
    for _, box in scored:
        if all(box_iou(box, other) < 0.5 for other in kept):
            kept.append(box)
    return kept
