"""Check face redaction with a detector it does not use, and the Haar path it replaced.

The independent check is OpenCV's Haar cascades (two frontal, and the profile one both ways
round) at permissive settings. It looks at each person the object detector finds, upscaled
so that even a small head is cascade-sized. A face *survives* when the cascades find it at a
person on the original and again at the same place on the redacted copy. Finds that appear
only on the copy are the cascades reacting to the blocks, not a face: the original had none.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import ultralytics

from contracts.events import EvidenceFrame, RedactedCopy
from edge.config import RedactionSettings
from edge.detections import FloatArray, Image, box_iou
from edge.detector import Detector
from edge.redaction import pixelate, reencoded

Box = tuple[int, int, int, int]  # x1, y1, x2, y2

ULTRALYTICS_ASSETS = Path(ultralytics.__file__).parent / "assets"
PHOTOS_WITH_PEOPLE = ("bus.jpg", "zidane.jpg")  # ship inside the ultralytics wheel
CLIP_SUFFIXES = frozenset({".avi", ".mp4"})
IMAGE_SUFFIXES = frozenset({".jpg", ".png"})
PERSON_CLASS = 0  # COCO
CHECK_HEIGHT = 320  # a person is searched at least this tall: a head of ~40 px
PERSON_MARGIN = 0.1
UPPER_SHARE = 0.4  # a face is in the top of a person's box, even bent or sitting; hands are not
SAME_PLACE_IOU = 0.3


# The demo photo's two bystanders' faces (x1, y1, x2, y2 in bus.jpg), looked up by eye.
BUS_FACES: tuple[Box, ...] = ((113, 415, 155, 469), (268, 422, 306, 472))


def decoded(data: bytes) -> Image:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a decodable image")
    return np.asarray(image, np.uint8)


def hidden(original: Image, redacted: Image, face: Box) -> bool:
    """Whether the face's place is changed and its detail gone (not a JPEG re-encode)."""
    x1, y1, x2, y2 = face
    before, after = original[y1:y2, x1:x2], redacted[y1:y2, x1:x2]
    changed = float(np.abs(before.astype(np.int16) - after.astype(np.int16)).mean())
    detail_before = float(cv2.Laplacian(before, cv2.CV_64F).var())
    detail_after = float(cv2.Laplacian(after, cv2.CV_64F).var())
    return changed > 15 and detail_after < detail_before / 20


@dataclass(frozen=True, slots=True)
class Scene:
    """One image with people, and where the detector found them."""

    name: str
    image: Image
    people: FloatArray  # N x 4


class IndependentFaces:
    """The Haar cascades, permissive, searched in the top of each person: x1 y1 x2 y2."""

    def __init__(self) -> None:
        folder = Path(cv2.data.haarcascades)  # type: ignore[attr-defined]
        names = ("frontalface_default", "frontalface_alt2", "profileface")
        self._cascades = [
            cv2.CascadeClassifier(str(folder / f"haarcascade_{n}.xml")) for n in names
        ]
        if any(c.empty() for c in self._cascades):
            raise RuntimeError(f"the Haar cascades are missing from {folder}")

    def at_people(self, image: Image, people: FloatArray) -> list[Box]:
        height, width = image.shape[:2]
        found: list[Box] = []
        for x1, y1, x2, y2 in (map(float, box) for box in people):
            mx, my = (x2 - x1) * PERSON_MARGIN, (y2 - y1) * PERSON_MARGIN
            left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
            right = min(width, int(x2 + mx))
            bottom = min(height, int(y1 + (y2 - y1) * UPPER_SHARE + my))
            if right - left < 4 or bottom - top < 4:
                continue
            scale = max(1.0, CHECK_HEIGHT * UPPER_SHARE / (bottom - top))
            crop = np.asarray(
                cv2.resize(image[top:bottom, left:right], None, fx=scale, fy=scale), np.uint8
            )
            found += [
                (
                    left + round(fx1 / scale),
                    top + round(fy1 / scale),
                    left + round(fx2 / scale),
                    top + round(fy2 / scale),
                )
                for fx1, fy1, fx2, fy2 in self.faces(crop)
            ]
        return found

    def faces(self, image: Image) -> list[Box]:
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        width = grey.shape[1]
        found: list[Box] = []
        for index, cascade in enumerate(self._cascades):
            mirrored = [False, True] if index == len(self._cascades) - 1 else [False]
            for mirror in mirrored:  # the profile cascade knows faces looking one way only
                searched = cv2.flip(grey, 1) if mirror else grey
                hits = cascade.detectMultiScale(
                    searched, scaleFactor=1.05, minNeighbors=2, minSize=(16, 16)
                )
                for x, y, w, h in (map(int, hit) for hit in hits):
                    x = width - x - w if mirror else x
                    found.append((x, y, x + w, y + h))
        return found


def surviving_faces(
    check: IndependentFaces, original: Image, redacted: Image, people: FloatArray
) -> tuple[list[Box], list[Box]]:
    """(faces the check finds at the people on the original, those it still finds after)."""
    before = check.at_people(original, people)
    after = check.at_people(redacted, people)
    return before, [f for f in after if any(box_iou(f, b) >= SAME_PLACE_IOU for b in before)]


def people_in(detector: Detector, image: Image) -> FloatArray:
    detections = detector.detect(image)
    people: FloatArray = detections.xyxy[detections.class_id == PERSON_CLASS]
    return people


def scenes(data: Path, detector: Detector, frames_per_clip: int = 8) -> Iterator[Scene]:
    """The photos and evenly sampled clip frames of the shared data in which people are found.

    ``data`` is the shared data folder (its clips/ and images/); the ultralytics photos come
    first.
    """
    photos = [ULTRALYTICS_ASSETS / name for name in PHOTOS_WITH_PEOPLE]
    photos += sorted(p for p in (data / "images").iterdir() if p.suffix in IMAGE_SUFFIXES)
    for path in photos:
        image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read {path}")
        yield from _with_people(path.name, np.asarray(image, np.uint8), detector)
    for path in sorted(p for p in (data / "clips").iterdir() if p.suffix in CLIP_SUFFIXES):
        capture = cv2.VideoCapture(str(path))
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        try:
            for index in np.linspace(0, total - 1, frames_per_clip, dtype=np.int64):
                capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
                ok, image = capture.read()
                if ok:
                    name = f"{path.name}#{int(index)}"
                    yield from _with_people(name, np.asarray(image, np.uint8), detector)
        finally:
            capture.release()


def _with_people(name: str, image: Image, detector: Detector) -> Iterator[Scene]:
    people = people_in(detector, image)
    if len(people):
        yield Scene(name, image, people)


class HaarRedactor:
    """The redaction that edge.redaction replaced, kept as the benchmark's baseline.

    The frontal Haar cascade at its old settings; its finds are pixelated as the new path does.
    """

    def __init__(self, settings: RedactionSettings, search_width: int = 960) -> None:
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
        self._cascade = cv2.CascadeClassifier(str(path))
        self._settings = settings
        self._search_width = search_width

    def faces(self, image: Image) -> list[Box]:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        scale = min(1.0, self._search_width / grey.shape[1])
        if scale < 1.0:
            grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        found = self._cascade.detectMultiScale(
            cv2.equalizeHist(grey), scaleFactor=1.15, minNeighbors=5, minSize=(16, 16)
        )
        return [
            (round(x / scale), round(y / scale), round((x + w) / scale), round((y + h) / scale))
            for x, y, w, h in (map(int, face) for face in found)
        ]

    def redact(self, image: Image) -> tuple[Image, int]:
        faces = self.faces(image)
        return pixelate(image, faces), len(faces)

    def redacted_copy(self, frame: EvidenceFrame) -> RedactedCopy:
        return reencoded(frame, self.redact, self._settings)
