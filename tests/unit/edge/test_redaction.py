"""Face blurring on real photographs and the evidence hash chain."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
import ultralytics

from contracts.events import EvidenceFrame, EvidenceLabel, Phase, broken_link
from edge.config import EvidenceSettings, RedactionSettings
from edge.detections import Image
from edge.evidence import encode_evidence
from edge.redaction import EvidenceSealer, FaceRedactor
from tests.unit.edge.conftest import T0

# Real photographs that ship inside the ultralytics wheel: people facing the camera.
ASSETS = Path(ultralytics.__file__).parent / "assets"


def photo(name: str) -> Image:
    image = cv2.imread(str(ASSETS / name))
    assert image is not None
    return np.asarray(image, dtype=np.uint8)


@pytest.fixture(scope="module")
def redactor() -> FaceRedactor:
    return FaceRedactor(RedactionSettings())


def overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


@pytest.mark.parametrize("name", ["zidane.jpg", "bus.jpg"])
def test_faces_in_real_photos_are_found_and_unrecognisable_after(
    redactor: FaceRedactor, name: str
) -> None:
    image = photo(name)
    faces = redactor.faces(image)
    assert len(faces) >= 2
    redacted, count = redactor.redact(image)
    assert count == len(faces)
    after = redactor.faces(redacted)
    assert not [f for f in faces if any(overlaps(f, g) for g in after)], "no face survives"
    x, y, w, h = faces[0]
    before_detail = cv2.Laplacian(image[y : y + h, x : x + w], cv2.CV_64F).var()
    after_detail = cv2.Laplacian(redacted[y : y + h, x : x + w], cv2.CV_64F).var()
    assert after_detail < before_detail / 10


def frame(image: Image, label: EvidenceLabel = EvidenceLabel.LATEST) -> EvidenceFrame:
    return encode_evidence(image, label, T0, EvidenceSettings())


def test_the_console_copy_is_blurred_and_the_original_untouched(redactor: FaceRedactor) -> None:
    original = frame(photo("zidane.jpg"))
    [sealed] = EvidenceSealer(redactor).seal(uuid.uuid4(), Phase.OPENED, [original])
    assert sealed.data == original.data
    assert sealed.sha256 == original.sha256
    assert sealed.redacted is not None
    assert sealed.redacted.faces_blurred >= 2
    assert sealed.redacted.sha256 == hashlib.sha256(sealed.redacted.data).hexdigest()
    assert sealed.redacted.data != original.data


def test_the_chain_runs_across_a_violations_events_and_shows_a_removed_frame() -> None:
    sealer = EvidenceSealer(None)
    violation = uuid.uuid4()
    shades = [np.full((48, 64, 3), shade, np.uint8) for shade in (20, 80, 140, 200)]
    opened = sealer.seal(violation, Phase.OPENED, [frame(i) for i in shades[:3]])
    updated = sealer.seal(violation, Phase.UPDATED, [frame(shades[3])])
    frames = opened + updated
    assert all(f.redacted is None for f in frames)
    assert broken_link(frames) is None
    assert broken_link([frames[0], *frames[2:]]) == 1, "the removed midway frame shows"
    assert broken_link([frames[1], frames[0], *frames[2:]]) == 0, "so does a reordering"
    tampered = frames[2].model_copy(update={"data": b"edited", "sha256": "0" * 64})
    assert broken_link([*frames[:2], tampered, frames[3]]) == 2


def test_a_cleared_violation_ends_its_chain_and_others_are_separate() -> None:
    sealer = EvidenceSealer(None)
    first, second = uuid.uuid4(), uuid.uuid4()
    image = np.full((48, 64, 3), 50, np.uint8)
    a = sealer.seal(first, Phase.OPENED, [frame(image)])
    b = sealer.seal(second, Phase.OPENED, [frame(image)])
    assert a[0].chain_sha256 == b[0].chain_sha256, "both start from the genesis value"
    cleared = sealer.seal(first, Phase.CLEARED, [frame(image, EvidenceLabel.CLEARED)])
    assert broken_link(a + cleared) is None
    again = sealer.seal(first, Phase.UPDATED, [frame(image)])
    assert again[0].chain_sha256 == a[0].chain_sha256, "a cleared chain is forgotten"
