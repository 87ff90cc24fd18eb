"""Finding plates on a vehicle: a text detector's lines, or plate colours and dense edges.

``TextBoxFinder`` (RapidOCR's text detector) is tried first; ``find_plate_regions`` (plate
colours, dense vertical edges, a plate's aspect ratio) is the fallback.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

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


Quad = NDArray[np.float32]
"""A text box's corners, (4, 2): top-left, top-right, bottom-right, bottom-left."""

TEXT_SIDE = 640  # the text detector sees a vehicle's lower part at most this long a side
TEXT_BOXES = 4  # text boxes read per vehicle, most text-like first


class TextBoxFinder:
    """Text lines in a vehicle's lower part: RapidOCR's PP-OCRv4 text detector (DBNet).

    The model ships in the rapidocr-onnxruntime wheel, beside the recogniser. It finds the plate
    by its characters whatever the plate's colour, and a double-row plate as two lines.
    """

    def __init__(self, threads: int) -> None:
        from rapidocr_onnxruntime.ch_ppocr_det import TextDetector  # type: ignore[import-untyped]
        from rapidocr_onnxruntime.main import DEFAULT_CFG_PATH  # type: ignore[import-untyped]
        from rapidocr_onnxruntime.utils import (  # type: ignore[import-untyped]
            read_yaml,
            update_model_path,
        )

        config = update_model_path(read_yaml(DEFAULT_CFG_PATH))["Det"]
        config["intra_op_num_threads"] = threads
        config["inter_op_num_threads"] = 1
        self._detector = TextDetector(config)

    def __call__(self, region: Image) -> list[Quad]:
        """Text boxes in ``region`` (pixels of the region), most confident first."""
        height, width = region.shape[:2]
        scale = min(1.0, TEXT_SIDE / max(height, width))
        size_h = max(32, round(height * scale / 32) * 32)
        size_w = max(32, round(width * scale / 32) * 32)
        resized = cv2.resize(region, (size_w, size_h), interpolation=cv2.INTER_AREA)
        batch = (resized.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
        probabilities = self._detector.infer(batch)[0]
        boxes, scores = self._detector.postprocess_op(probabilities, (height, width))
        ranked = sorted(zip(scores, boxes, strict=True), key=lambda pair: -float(pair[0]))
        return [np.asarray(box, dtype=np.float32) for _, box in ranked]


def rectify(region: Image, quad: Quad, pad_x: float = 0.08, pad_y: float = 0.08) -> Image | None:
    """The text box cut out and straightened with a margin; None when too small.

    The side margins are wide: the text detector tends to cut off a plate's last character
    when it is red on black (领, 港, 澳, 使 plates) or its first when the province is faint.
    """
    top = float(np.linalg.norm(quad[1] - quad[0]))
    bottom = float(np.linalg.norm(quad[2] - quad[3]))
    left = float(np.linalg.norm(quad[3] - quad[0]))
    right = float(np.linalg.norm(quad[2] - quad[1]))
    width, height = max(top, bottom), max(left, right)
    if width < 16 or height < 6:
        return None
    out_w, out_h = round(width * (1 + 2 * pad_x)), round(height * (1 + 2 * pad_y))
    x0, y0 = width * pad_x, height * pad_y
    target = np.array(
        [[x0, y0], [x0 + width, y0], [x0 + width, y0 + height], [x0, y0 + height]],
        dtype=np.float32,
    )
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    return np.asarray(
        cv2.warpPerspective(
            region, matrix, (out_w, out_h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
        ),
        dtype=np.uint8,
    )


def row_above(quad: Quad, share: float = 0.8) -> Quad:
    """Where a double-row plate's top row would be over ``quad``, its bottom row: the quad
    moved up by ``share`` of its height and made ``share`` as tall."""
    up = (quad[0] - quad[3]) * share  # from the bottom-left corner towards the top-left
    upper = np.stack([quad[0] + up, quad[1] + up, quad[1], quad[0]])
    return np.asarray(upper, dtype=np.float32)


def row_pairs(quads: Sequence[Quad]) -> list[tuple[int, int]]:
    """(upper, lower) text boxes that may be a double-row plate's rows.

    The upper row (province and letter) is shorter, sits just above the lower one (5 large
    characters) and is centred over it.
    """
    pairs: list[tuple[int, int]] = []
    rects = [(q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max()) for q in quads]
    for i, (ux1, uy1, ux2, uy2) in enumerate(rects):
        for j, (lx1, ly1, lx2, ly2) in enumerate(rects):
            lower_h, upper_h = ly2 - ly1, uy2 - uy1
            centre = (ux1 + ux2) / 2
            if (
                i != j
                and upper_h < lower_h * 1.05
                and -0.3 * lower_h <= ly1 - uy2 <= 0.8 * lower_h
                and lx1 - 0.1 * (lx2 - lx1) <= centre <= lx2 + 0.1 * (lx2 - lx1)
                and (ux2 - ux1) <= (lx2 - lx1) * 1.1
            ):
                pairs.append((i, j))
    return pairs
