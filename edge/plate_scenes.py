"""Generated whole-scene plate images: real frames, rendered plates, for `eval plates --frames`.

These scenes are GENERATED, not photographed. The background is real: frames of the shared
clips (../shared/data/clips) and the two shared vehicle photos (../shared/data/images). The
plates are not: each is rendered here (plate colours, a Chinese font, the plate's character
cells) in one of the formats the reader must handle (blue, green new-energy, yellow single and
double row, white 警 and WJ, black 港/澳/使/领), then warped in perspective onto a vehicle the
shared detector found, blurred, given noise and a light change, and saved as a JPEG named by
its plate. On the photos the rendered plate covers the car's own plate (its corners were
measured by hand, below); on clip frames a window around the vehicle is cropped and enlarged
so the plate is readable, which also enlarges the clip's own blur and compression.

Everything is seeded: the same seed and count give the same scenes. Nothing is committed:
scenes are written into a folder the caller names (a temporary one in the benchmark). Dev and
test sets differ by seed (bench/plates_frames.py: dev seed 1, test seed 2).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image as PilImage
from PIL import ImageDraw, ImageFont

from edge.detections import Image
from edge.detector import Detector
from edge.plate_eval import load_crop

FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
"""fonts-wqy-microhei (Debian): the Chinese font the plates are drawn in."""

PlateStyle = Literal[
    "blue",
    "green",
    "yellow",
    "yellow_double",
    "police",
    "armed_police",
    "hk_macau",
    "embassy",
    "consulate",
]
STYLES: tuple[PlateStyle, ...] = (
    "blue", "green", "yellow", "yellow_double", "police", "armed_police", "hk_macau", "embassy",
    "consulate",
)  # fmt: skip

_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_RED = (200, 20, 20)
_WHITE = (245, 245, 245)
_BLACK = (15, 15, 15)
# (background RGB, text RGB) per style; green is a gradient drawn separately.
_COLOURS: dict[PlateStyle, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "blue": ((20, 60, 190), _WHITE),
    "green": ((120, 215, 140), _BLACK),
    "yellow": ((235, 190, 30), _BLACK),
    "yellow_double": ((235, 190, 30), _BLACK),
    "police": (_WHITE, _BLACK),
    "armed_police": (_WHITE, _BLACK),
    "hk_macau": (_BLACK, _WHITE),
    "embassy": (_BLACK, _WHITE),
    "consulate": (_BLACK, _WHITE),
}
_RED_LAST = frozenset("警港澳领")

# The corners (top-left, top-right, bottom-right, bottom-left) of the real plate on each shared
# photo, measured by hand: a rendered plate covers it, so the photo's own plate is not in view.
PHOTO_PLATES: dict[str, tuple[tuple[float, float], ...]] = {
    "沪AF71017.jpg": ((402, 545), (655, 522), (650, 595), (400, 608)),
    "皖K66666.jpg": ((358, 328), (485, 323), (488, 366), (360, 372)),
}
CLIPS = (
    "vtest.avi",
    "traffic_sequence.mp4",
    "intersection-demo1.mp4",
    "intersection-demo2.mp4",
    "motorway-traffic.mp4",
)
READABLE_WIDTH = {False: (120.0, 220.0), True: (100.0, 160.0)}
"""A plate's width in the scene, pixels (single row, double row): a readable plate, as a
camera set up for plates sees it (a blue plate's characters are then 12-24 px wide)."""
VEHICLES = frozenset({"car", "truck", "bus", "motorcycle"})


@dataclass(frozen=True, slots=True)
class Background:
    """A real frame and the vehicles on it: either a photo's plate corners or detected boxes."""

    name: str
    image: Image
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    plate_quad: tuple[tuple[float, float], ...] | None = None


def plate_text(style: PlateStyle, rng: np.random.Generator) -> str:
    """A random plate of ``style`` that matches contracts.events.PLATE_PATTERN."""
    province = str(rng.choice(list(_PROVINCES)))
    letter = str(rng.choice(list(_LETTERS)))

    def chars(n: int, letters: int = 2) -> str:
        out = [str(rng.integers(0, 10)) for _ in range(n)]
        for i in rng.choice(n, size=int(rng.integers(0, letters + 1)), replace=False):
            out[int(i)] = str(rng.choice(list(_LETTERS)))
        return "".join(out)

    digits = "".join(str(d) for d in rng.integers(0, 10, size=6))
    if style in ("blue", "yellow"):
        return province + letter + chars(5)
    if style == "green":
        return province + letter + str(rng.choice(["D", "F"])) + chars(5, 1)
    if style == "yellow_double":
        return province + letter + chars(4) + str(rng.choice(["挂", "学", *string.digits]))
    if style == "police":
        return province + letter + digits[:4] + "警"
    if style == "armed_police":
        return "WJ" + province + digits[:4] + str(rng.choice(list("0123456789XBTSHJD")))
    if style == "hk_macau":
        return "粤Z" + digits[:4] + str(rng.choice(["港", "澳"]))
    if style == "embassy":
        return "使" + digits
    return province + letter + digits[:4] + "领"


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT), size)


@lru_cache(maxsize=4096)
def _cell(char: str, width: int, height: int, colour: tuple[int, int, int]) -> PilImage.Image:
    """One character drawn large then squeezed into its cell, like a plate's tall narrow glyphs.

    Cached (the font and each cell): pasting never changes the glyph, and the training crops of
    models.plate_recogniser render tens of thousands of plates.
    """
    font = _font(120)
    left, top, right, bottom = font.getbbox(char)
    size = (int(right - left) + 4, int(bottom - top) + 4)
    glyph = PilImage.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(glyph).text((2 - left, 2 - top), char, font=font, fill=(*colour, 255))
    return glyph.resize((width, height), PilImage.Resampling.LANCZOS)


def render_plate(text: str, style: PlateStyle) -> Image:
    """The plate as a BGR image: 440x140 (480x140 new-energy, 440x220 double row)."""
    background, ink = _COLOURS[style]
    double = style == "yellow_double"
    width, height = (480 if style == "green" else 440), (220 if double else 140)
    plate = PilImage.new("RGB", (width, height), background)
    if style == "green":  # white at the top fading to green at the bottom
        ramp = np.linspace(0, 1, height)[:, None, None]
        top, bottom = np.array([235, 250, 235]), np.array(background)
        plate = PilImage.fromarray(
            np.broadcast_to(top * (1 - ramp) + bottom * ramp, (height, width, 3)).astype(np.uint8)
        )
    draw = ImageDraw.Draw(plate)
    draw.rounded_rectangle((4, 4, width - 5, height - 5), radius=12, outline=ink, width=4)

    def colour_of(i: int, char: str) -> tuple[int, int, int]:
        if style == "armed_police" and i < 2:
            return _RED
        if style == "embassy" and char == "使":
            return _RED
        if i == len(text) - 1 and char in _RED_LAST:
            return _RED
        return ink

    if double:
        top_row, bottom_row = text[:2], text[2:]
        for i, char in enumerate(top_row):
            glyph = _cell(char, 60, 62, colour_of(i, char))
            plate.paste(glyph, (130 + i * 120, 14), glyph)
        for i, char in enumerate(bottom_row):
            glyph = _cell(char, 66, 118, colour_of(2 + i, char))
            plate.paste(glyph, (27 + i * 80, 88), glyph)
    else:
        count = len(text)
        margin, gap = 18, 12
        dot = 18 if text[:2] != "WJ" and text[0] != "使" else 0
        cell_w = (width - 2 * margin - dot - gap * (count - 1)) // count
        x = margin
        for i, char in enumerate(text):
            glyph = _cell(char, cell_w, 96, colour_of(i, char))
            plate.paste(glyph, (x, 22), glyph)
            x += cell_w + gap
            if i == 1 and dot:
                draw.ellipse((x - 2, 66, x + 8, 76), fill=ink)
                x += dot
    return np.ascontiguousarray(np.asarray(plate)[:, :, ::-1])


def backgrounds(
    shared_data: Path, detector: Detector, frames_per_clip: int = 4
) -> list[Background]:
    """The shared photos and a few frames of each clip with their vehicles (the detector's)."""
    found: list[Background] = []
    for name, quad in PHOTO_PLATES.items():
        path = shared_data / "images" / name
        if path.is_file():
            found.append(Background(name, load_crop(path), plate_quad=quad))
    for clip in CLIPS:
        capture = cv2.VideoCapture(str(shared_data / "clips" / clip))
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        for k in range(frames_per_clip):
            capture.set(cv2.CAP_PROP_POS_FRAMES, (k * total) // frames_per_clip)
            ok, read = capture.read()
            if not ok:
                continue
            frame = np.asarray(read, dtype=np.uint8)
            detections = detector.detect(frame)
            boxes = tuple(
                (float(x1), float(y1), float(x2), float(y2))
                for (x1, y1, x2, y2), cls in zip(detections.xyxy, detections.class_id, strict=True)
                if detections.class_names.get(int(cls)) in VEHICLES and x2 - x1 >= 40
            )
            if boxes:
                found.append(Background(f"{clip}#{k}", frame, boxes))
        capture.release()
    return found


def _quad_on_vehicle(
    box: Sequence[float], plate_size: tuple[int, int], rng: np.random.Generator
) -> NDArray[np.float32]:
    """Where a plate goes on a vehicle: low and near the middle, tilted a little in perspective."""
    x1, y1, x2, y2 = box
    width, height = plate_size
    cx = (x1 + x2) / 2 + rng.uniform(-0.08, 0.08) * (x2 - x1)
    cy = y1 + rng.uniform(0.62, 0.85) * (y2 - y1)
    corners = np.array(
        [[-width / 2, -height / 2], [width / 2, -height / 2], [width / 2, height / 2],
         [-width / 2, height / 2]], dtype=np.float32,
    )  # fmt: skip
    angle = np.deg2rad(rng.uniform(-5, 5))
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], dtype=np.float32
    )
    corners = corners @ rotation.T
    corners += rng.uniform(-0.06, 0.06, size=(4, 2)).astype(np.float32) * width
    return corners + np.array([cx, cy], dtype=np.float32)


def _paste(scene: Image, plate: Image, quad: NDArray[np.float32]) -> Image:
    h, w = plate.shape[:2]
    source = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(source, quad.astype(np.float32))
    size = (scene.shape[1], scene.shape[0])
    warped = cv2.warpPerspective(plate, matrix, size, flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), matrix, size, flags=cv2.INTER_AREA)
    alpha = (mask.astype(np.float32) / 255.0)[:, :, None]
    return np.asarray(scene * (1 - alpha) + warped * alpha, dtype=np.uint8)


def _degrade(scene: Image, rng: np.random.Generator) -> Image:
    """Blur, light change (gain and gamma) and sensor noise over the whole scene."""
    sigma = rng.uniform(0.0, 1.0)
    if sigma > 0.3:
        scene = np.asarray(cv2.GaussianBlur(scene, (0, 0), sigma), dtype=np.uint8)
    gain, gamma = rng.uniform(0.55, 1.25), rng.uniform(0.75, 1.35)
    lit = 255.0 * (np.clip(scene.astype(np.float32) * gain / 255.0, 0, 1) ** gamma)
    lit += rng.normal(0.0, rng.uniform(0.0, 7.0), size=lit.shape)
    return np.asarray(np.clip(lit, 0, 255), dtype=np.uint8)


def make_scene(
    background: Background, style: PlateStyle, rng: np.random.Generator
) -> tuple[str, Image, tuple[float, float]] | None:
    """One scene: a plate of ``style`` on a vehicle of ``background``, and the plate's centre;
    None if no vehicle of the background fits."""
    text = plate_text(style, rng)
    plate = render_plate(text, style)
    if background.plate_quad is not None:
        scene = background.image.copy()
        quad = np.array(background.plate_quad, dtype=np.float32)
        if style == "yellow_double":  # a double-row plate is taller: grow the quad upwards
            top, bottom = quad[:2].copy(), quad[2:][::-1].copy()
            quad[:2] = bottom + (top - bottom) * 2.2
        quad += rng.uniform(-2, 2, size=quad.shape).astype(np.float32)
        return text, _degrade(_paste(scene, plate, quad), rng), _centre(quad)
    boxes = [b for b in background.boxes if b[2] - b[0] >= 40]
    if not boxes:
        return None
    x1, y1, x2, y2 = boxes[int(rng.integers(len(boxes)))]
    vw, vh = x2 - x1, y2 - y1
    aspect = plate.shape[1] / plate.shape[0]
    plate_w = rng.uniform(*READABLE_WIDTH[style == "yellow_double"])
    # Enlarge a window around the vehicle so the plate is at most ~40% of the vehicle's width.
    scale = float(np.clip(plate_w / (0.4 * vw), 1.0, 3.0))
    plate_w = min(plate_w, 0.4 * vw * scale)
    if plate_w < READABLE_WIDTH[style == "yellow_double"][0]:
        return None
    frame = background.image
    margin_x, margin_y = 0.9 * vw, 0.9 * vh
    wx1, wy1 = max(0, int(x1 - margin_x)), max(0, int(y1 - margin_y))
    wx2 = min(frame.shape[1], int(x2 + margin_x))
    wy2 = min(frame.shape[0], int(y2 + margin_y))
    window = frame[wy1:wy2, wx1:wx2]
    scene = np.asarray(
        cv2.resize(window, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC), np.uint8
    )
    box = ((x1 - wx1) * scale, (y1 - wy1) * scale, (x2 - wx1) * scale, (y2 - wy1) * scale)
    quad = _quad_on_vehicle(box, (round(plate_w), round(plate_w / aspect)), rng)
    return text, _degrade(_paste(scene, plate, quad), rng), _centre(quad)


def _centre(quad: NDArray[np.float32]) -> tuple[float, float]:
    return float(quad[:, 0].mean()), float(quad[:, 1].mean())


def _on_a_vehicle(scene: Image, centre: tuple[float, float], detector: Detector) -> bool:
    """Whether the detector finds a vehicle in the finished scene whose box holds the plate."""
    detections = detector.detect(scene)
    x, y = centre
    return any(
        detections.class_names.get(int(cls)) in VEHICLES and x1 <= x <= x2 and y1 <= y <= y2
        for (x1, y1, x2, y2), cls in zip(detections.xyxy, detections.class_id, strict=True)
    )


@dataclass(frozen=True, slots=True)
class GeneratedSet:
    written: list[Path]
    dropped_no_vehicle: (
        int  # scenes made but dropped: the detector found no vehicle under the plate
    )


def generate_scenes(
    directory: Path,
    count: int,
    seed: int,
    backgrounds_: Sequence[Background],
    detector: Detector | None = None,
    styles: Sequence[PlateStyle] = STYLES,
) -> GeneratedSet:
    """Write ``count`` scenes, styles in turn, as JPEGs named by their plate.

    With a detector, a scene is kept only if the detector finds a vehicle under the plate (the
    reader is scored, not the detector); the dropped ones are counted.
    """
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    dropped = 0
    attempts = 0
    while len(written) < count and attempts < count * 20:
        attempts += 1
        background = backgrounds_[int(rng.integers(len(backgrounds_)))]
        made = make_scene(background, styles[len(written) % len(styles)], rng)
        if made is None:
            continue
        text, scene, centre = made
        path = directory / f"{text}.jpg"
        if path.exists():
            continue
        if detector is not None and not _on_a_vehicle(scene, centre, detector):
            dropped += 1
            continue
        quality = int(rng.integers(60, 96))
        ok, encoded = cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            continue
        path.write_bytes(encoded.tobytes())
        written.append(path)
    return GeneratedSet(written, dropped)


__all__ = [
    "CLIPS",
    "FONT",
    "PHOTO_PLATES",
    "STYLES",
    "Background",
    "GeneratedSet",
    "PlateStyle",
    "backgrounds",
    "generate_scenes",
    "make_scene",
    "plate_text",
    "render_plate",
]
