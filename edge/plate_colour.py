"""A plate's background colour, from the crop (or lower row) it was read from.

Chinese plates' colours follow their format (GA 36): blue or yellow for ordinary plates, green
for new-energy ones, white for police (警) and armed-police (WJ) plates, black for Hong Kong and
Macau (港, 澳), embassy (使) and consulate (领) plates. The reader checks a red suffix it read
against the colour it sees (``PlateReader.settle``: edge.plates.SUFFIX_COLOURS).

On round 12's dev (docs/benchmarks.md, plates, round 12: the 2,642 readings of 4,721 vehicles
in 2,520 generated scenes), by the scene's plate: black plates 870 of 871 read black (1
"other"), white 578 of 582 white (4 black), blue and yellow ones 890 of 890 blue or yellow,
green 299 of 299.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from edge.detections import Image

PlateColour = Literal["blue", "green", "yellow", "white", "black", "other"]

SATURATED = 0.3
"""The share of saturated pixels (S > 70, V > 50) over which a plate is blue, yellow or green by
their median hue; under it, white or black (by the median value)."""
GREENISH = 0.3
"""The share of faintly green pixels (hue 35-90, S > 30) over which a pale plate is green: a
new-energy plate's gradient is mostly pale. Round 12's dev: white plates 0.185 at most (95 %
under 0.004), pale green ones 0.399 and up."""
WHITE_VALUE = 110
"""A pale plate whose median value (HSV V, 0-255) is over this is white, else black."""


def plate_colour(crop: Image) -> PlateColour:
    """The colour of the plate filling ``crop`` (BGR): its middle, without the rim, is looked at."""
    height, width = crop.shape[:2]
    core = crop[height // 6 : height - height // 6, width // 12 : width - width // 12]
    if core.size == 0:
        return "other"
    hsv = cv2.cvtColor(np.ascontiguousarray(core), cv2.COLOR_BGR2HSV).reshape(-1, 3).astype(int)
    hue, saturation, value = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    saturated = (saturation > 70) & (value > 50)
    if float(saturated.mean()) > SATURATED:
        median = float(np.median(hue[saturated]))
        if 90 <= median <= 135:
            return "blue"
        if 35 <= median < 90:
            return "green"
        if 10 <= median < 35:
            return "yellow"
        return "other"
    greenish = (hue >= 35) & (hue < 90) & (saturation > 30) & (value > 50)
    if float(greenish.mean()) > GREENISH:
        return "green"
    return "white" if float(np.median(value)) > WHITE_VALUE else "black"


__all__ = ["PlateColour", "plate_colour"]
