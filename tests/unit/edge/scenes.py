"""Generated scenes on real footage: things drawn into real vtest.avi frames.

No footage of stacked goods in a fire lane exists in ../shared/data, so tests paint them in.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.detections import Image

# The road across the picture where people keep walking: the fire lane under test.
FIRE_LANE = [
    [0, 190],
    [400, 188],
    [640, 225],
    [768, 290],
    [768, 470],
    [600, 410],
    [430, 315],
    [250, 275],
    [0, 240],
]
STACK = (300, 230, 420, 320)  # x1, y1, x2, y2 of the generated stack of boxes, on the road


def stack_of_boxes() -> Image:
    """A drawn pile of cardboard boxes: brown faces, dark seams, a pale tape line on each."""
    x1, y1, x2, y2 = STACK
    pile = np.full((y2 - y1, x2 - x1, 3), (70, 120, 170), dtype=np.uint8)
    for top in range(0, y2 - y1, 30):
        shade = 20 * ((top // 30) % 2)
        pile[top : top + 30] = (70 + shade, 120 + shade, 170 + shade)
        cv2.line(pile, (0, top), (x2 - x1, top), (30, 40, 50), 2)
        for left in range(0, x2 - x1, 40):
            cv2.line(pile, (left, top), (left, top + 30), (30, 40, 50), 2)
            cv2.line(pile, (left + 20, top), (left + 20, top + 30), (200, 220, 230), 1)
    return pile


def with_stack(image: Image) -> Image:
    x1, y1, x2, y2 = STACK
    out = image.copy()
    out[y1:y2, x1:x2] = stack_of_boxes()
    return out


SHED = (112, 420, 279, 516)  # x1, y1, x2, y2 of the generated shed, on the lawn


def with_shed(image: Image) -> Image:
    """GENERATED: a small steel-roofed shed drawn onto the lawn of a real frame."""
    out = image.copy()
    x1, y1, x2, y2 = SHED
    cv2.rectangle(out, (x1 + 8, y1 + 25), (x2 - 8, y2), (170, 175, 180), -1)  # walls
    cv2.rectangle(out, (x1, y1), (x2, y1 + 30), (160, 90, 40), -1)  # blue roof
    for x in range(x1, x2, 7):  # corrugation
        cv2.line(out, (x, y1), (x, y1 + 30), (120, 60, 25), 1)
    cv2.rectangle(out, (x1 + 28, y1 + 45), (x1 + 63, y2), (60, 60, 70), -1)  # door
    cv2.rectangle(out, (x1 + 93, y1 + 45), (x1 + 133, y1 + 70), (90, 80, 60), -1)  # window
    cv2.line(out, (x1 + 113, y1 + 45), (x1 + 113, y1 + 70), (200, 200, 200), 2)
    return out
