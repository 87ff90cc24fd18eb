"""No-change controls: what a fixed camera sees over days while nothing is built.

Every control is the *before* view altered by something that is not a structure: light, gamma,
focus, sensor noise, the camera's aim, a shadow that moved, rain, the night infrared picture, a
parked car or a person in view. A structure alarm must ignore all of them. All are generated
from the before view with a fixed seed (two runs give the same images); the parked car and the
person are real crops, cut by the detector's box from frames of the shared clips.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge.detections import Image

Control = tuple[str, Image]


@dataclass(frozen=True, slots=True)
class ObjectCrop:
    """A real object cut from a camera frame by the detector's box (a person, a car, ...)."""

    class_name: str
    image: Image


def _clip(values: np.ndarray) -> Image:
    return np.asarray(np.clip(values, 0, 255), dtype=np.uint8)


def _moved(image: Image, dx: float, dy: float) -> Image:
    height, width = image.shape[:2]
    matrix = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float64)
    moved = cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
    return np.asarray(moved, dtype=np.uint8)


def no_change_controls(image: Image, seed: int) -> list[Control]:
    """The view altered in light, gamma, focus, noise and aim only: nothing was built."""
    height, width = image.shape[:2]
    pixels = image.astype(np.float32)
    noise = np.random.default_rng(seed).normal(0.0, 8.0, image.shape)
    return [
        ("brighter x1.25+20", _clip(pixels * 1.25 + 20)),
        ("darker x0.6", _clip(pixels * 0.6)),
        ("gamma 0.6", _clip(255 * (pixels / 255) ** 0.6)),
        ("gamma 1.6", _clip(255 * (pixels / 255) ** 1.6)),
        ("blur sigma 1.5", np.asarray(cv2.GaussianBlur(image, (0, 0), 1.5), dtype=np.uint8)),
        ("noise sigma 8", _clip(pixels + noise)),
        ("shift 1%", _moved(image, round(width * 0.01), round(height * 0.01))),
        ("shift 2%", _moved(image, round(width * 0.02), -round(height * 0.02))),
    ]


def every_control(image: Image, seed: int, objects: Sequence[ObjectCrop] = ()) -> list[Control]:
    """The no-change controls, then the camera's: every view a structure alarm must ignore."""
    return no_change_controls(image, seed) + camera_controls(image, seed, objects)


def camera_controls(image: Image, seed: int, objects: Sequence[ObjectCrop] = ()) -> list[Control]:
    """Days at a fixed camera: a small shift, a moved shadow, rain, night IR, objects in view."""
    rng = np.random.default_rng(seed)
    controls: list[Control] = [
        ("shift 3 px", _moved(image, 3, -2)),
        ("moving shadow", _cast_shadow(image, rng)),
        ("rain", _rain(image, rng)),
        ("night IR", _night_infrared(image, rng)),
    ]
    for crop in objects:
        controls.append((f"{crop.class_name} in view", paste_object(image, crop, rng)))
    return controls


def _cast_shadow(image: Image, rng: np.random.Generator) -> Image:
    """A soft-edged shadow band of something out of view (a building, a tree) moved in."""
    height, width = image.shape[:2]
    mask = np.zeros((height, width), np.float32)
    x0 = rng.uniform(-0.3, 0.5) * width
    slant = rng.uniform(0.2, 0.6) * width
    span = rng.uniform(0.25, 0.45) * width
    band = np.array(
        [[x0, 0], [x0 + span, 0], [x0 + span + slant, height], [x0 + slant, height]], np.int32
    )
    cv2.fillPoly(mask, [band], 1.0)
    soft = np.asarray(cv2.GaussianBlur(mask, (0, 0), rng.uniform(3.0, 8.0)), np.float32)
    depth = rng.uniform(0.45, 0.65)  # how much light the shadow leaves
    shaded = image.astype(np.float32) * (1 - (1 - depth) * soft[..., None])
    return _clip(shaded)


def _rain(image: Image, rng: np.random.Generator) -> Image:
    """Bright slanted streaks over a slightly hazier view."""
    height, width = image.shape[:2]
    streaks = np.zeros((height, width), np.float32)
    count = int(height * width / 180)
    xs, ys = rng.uniform(0, width, count), rng.uniform(0, height, count)
    lengths = rng.uniform(6, 16, count)
    angle = np.deg2rad(rng.uniform(70, 85))
    for x, y, length in zip(xs, ys, lengths, strict=True):
        end = (int(x + length * np.cos(angle)), int(y + length * np.sin(angle)))
        cv2.line(streaks, (int(x), int(y)), end, float(rng.uniform(0.4, 1.0)), 1, cv2.LINE_AA)
    blurred = np.asarray(cv2.GaussianBlur(streaks, (0, 0), 0.6), np.float32)
    hazy = image.astype(np.float32) * 0.85 + 0.15 * float(image.mean())
    return _clip(hazy + 55.0 * blurred[..., None])


def _night_infrared(image: Image, rng: np.random.Generator) -> Image:
    """Grey, flatter, noisier: the camera's IR picture at night."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    ir = 255 * (grey / 255) ** 0.8 * 0.8 + 25
    ir = ir + rng.normal(0.0, 3.0, ir.shape)
    return np.asarray(cv2.cvtColor(_clip(ir), cv2.COLOR_GRAY2BGR), dtype=np.uint8)


def paste_object(image: Image, crop: ObjectCrop, rng: np.random.Generator) -> Image:
    """The crop scaled to a plausible size and pasted at a seeded place, edges feathered."""
    height, width = image.shape[:2]
    crop_height, crop_width = crop.image.shape[:2]
    if crop.class_name == "person":
        scale = rng.uniform(0.25, 0.35) * height / crop_height
    else:
        scale = rng.uniform(0.22, 0.32) * width / crop_width
    return paste_scaled(image, crop.image, scale, rng)[0]


def paste_scaled(
    image: Image, crop: Image, scale: float, rng: np.random.Generator
) -> tuple[Image, tuple[slice, slice]]:
    """``crop`` resized by ``scale`` (kept inside the view) and pasted at a seeded place,
    edges feathered; also the rows and columns it covers."""
    height, width = image.shape[:2]
    crop_height, crop_width = crop.shape[:2]
    new_width = max(4, min(width - 2, round(crop_width * scale)))
    new_height = max(4, min(height - 2, round(crop_height * scale)))
    resized = cv2.resize(crop, (new_width, new_height), interpolation=cv2.INTER_AREA)
    x = int(rng.integers(0, width - new_width + 1))
    y = int(rng.integers(0, height - new_height + 1))
    alpha = np.zeros((new_height, new_width), np.float32)
    alpha[1:-1, 1:-1] = 1.0
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.0)[..., None]
    out = image.astype(np.float32)
    covered = (slice(y, y + new_height), slice(x, x + new_width))
    out[covered] = out[covered] * (1 - alpha) + resized * alpha
    return _clip(out), covered
