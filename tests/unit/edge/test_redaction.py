"""Face redaction on real photographs and footage, and the evidence hash chain.

People come from the real detector (YOLO11n, OpenVINO INT8); whether a face survives is judged
by edge.redaction_eval's Haar check, a detector the redaction does not use.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from contracts.events import (
    CAPTION_HEIGHT,
    EvidenceFrame,
    EvidenceLabel,
    Phase,
    ViolationEvent,
    broken_link,
)
from contracts.sites import CameraConfig, ZoneConfig, ZoneKind
from edge.config import DetectorSettings, EdgeSettings, EvidenceSettings, RedactionSettings
from edge.detections import Detections, FloatArray, Frame, Image
from edge.detector import Detector, create_detector
from edge.evidence import encode_evidence
from edge.outbox import Outbox
from edge.pipeline import CameraPipeline, GatewayServices
from edge.redaction import (
    EvidenceSealer,
    FaceRedactor,
    People,
    PeopleLog,
    evidence_heads,
    head_regions,
)
from edge.redaction_eval import (
    BUS_FACES,
    ULTRALYTICS_ASSETS,
    IndependentFaces,
    decoded,
    hidden,
    people_in,
    scenes,
    surviving_faces,
)
from tests.unit.edge.conftest import COCO, T0


def photo(name: str) -> Image:
    image = cv2.imread(str(ULTRALYTICS_ASSETS / name))
    assert image is not None
    return np.asarray(image, dtype=np.uint8)


@pytest.fixture(scope="module")
def redactor() -> FaceRedactor:
    return FaceRedactor(RedactionSettings())


@pytest.fixture(scope="module")
def detector(model_path: Path) -> Detector:
    return create_detector(DetectorSettings(model=str(model_path)))


@pytest.fixture(scope="module")
def check() -> IndependentFaces:
    return IndependentFaces()


def bus_demo_event(tmp_path: Path, detector: Detector, redactor: FaceRedactor) -> ViolationEvent:
    """The demo: bus.jpg held as a camera, a fire lane round the bus, until the case opens."""
    image = photo("bus.jpg")
    lane = ZoneConfig(
        id="fire-lane-gate",
        kind=ZoneKind.FIRE_LANE,
        polygon=[[0, 450], [810, 450], [810, 900], [0, 900]],
        dwell_seconds=15,
    )
    services = GatewayServices(
        model_info=detector.model_info,
        outbox=Outbox(tmp_path / "outbox.sqlite"),
        sealer=EvidenceSealer(redactor),
    )
    camera = CameraConfig(id="cam-gate", source="bus.jpg", zones=[lane])
    pipeline = CameraPipeline(
        "site", "gw", camera, EdgeSettings(data_dir=tmp_path), services, fps=2
    )
    detections = detector.detect(image)
    for step in range(60):
        frame = Frame(image, step, T0 + timedelta(seconds=step / 2))
        for event in pipeline.process(frame, detections):
            if event.phase is Phase.OPENED:
                return event
    raise AssertionError("the bus never opened a case")


def test_the_bus_demos_console_copy_hides_both_bystanders_faces(
    tmp_path: Path, detector: Detector, redactor: FaceRedactor, check: IndependentFaces
) -> None:
    """Before: the copy the console served was the original, faces sharp."""
    event = bus_demo_event(tmp_path, detector, redactor)
    panoramas = [f for f in event.evidence if f.label is not EvidenceLabel.CLOSEUP]
    assert len(panoramas) >= 2
    assert_bus_faces_hidden(panoramas, detector, check)


def assert_bus_faces_hidden(
    panoramas: list[EvidenceFrame], detector: Detector, check: IndependentFaces
) -> None:
    """Both bystanders' faces on bus.jpg's panoramas are hidden in the redacted copies, and the
    independent check finds no face left where the detector sees a person."""
    # The evidence is the photo below the caption band, at full size (810 px < max_width).
    people = people_in(detector, photo("bus.jpg")) + np.array([0, CAPTION_HEIGHT] * 2, np.float32)
    for frame in panoramas:
        assert frame.redacted is not None
        original, redacted = decoded(frame.data), decoded(frame.redacted.data)
        for x1, y1, x2, y2 in BUS_FACES:
            face = (x1, y1 + CAPTION_HEIGHT, x2, y2 + CAPTION_HEIGHT)
            assert hidden(original, redacted, face), f"{frame.label}: the face at {face} shows"
        at_stake, survived = surviving_faces(check, original, redacted, people)
        assert len(at_stake) >= 2, "the check sees the faces on the original"
        assert survived == [], f"{frame.label}: the independent check still finds {survived}"


@pytest.mark.slow
def test_no_face_survives_on_any_shared_photo_or_clip_frame_with_people(
    shared_data: Path, detector: Detector, redactor: FaceRedactor, check: IndependentFaces
) -> None:
    """Every photo, and 8 frames spread over each clip, in which the detector finds people:
    no face survives, and the copy differs from the original at every person's head."""
    checked, at_stake = [], 0
    for scene in scenes(shared_data, detector):
        height, width = scene.image.shape[:2]
        redacted, _ = redactor.redact(scene.image, head_regions(scene.people, (width, height)))
        before, survived = surviving_faces(check, scene.image, redacted, scene.people)
        assert survived == [], f"{scene.name}: the independent check still finds {survived}"
        for x1, y1, x2, _ in scene.people.astype(int):
            top = slice(max(0, y1), y1 + max(4, (x2 - x1) // 3)), slice(max(0, x1), x2)
            changed = np.abs(scene.image[top].astype(np.int16) - redacted[top]).mean()
            assert changed > 8, f"{scene.name}: the copy is the original at {x1, y1}"
        at_stake += len(before)
        checked.append(scene.name)
    assert {"bus.jpg", "zidane.jpg"} <= set(checked)
    assert sum(name.startswith("vtest.avi") for name in checked) >= 6
    assert at_stake >= 20, "the check must find faces on the originals to judge the copies"


def test_the_face_detector_alone_finds_near_faces(redactor: FaceRedactor) -> None:
    """Near faces with no person box (a body the frame cuts off) rest on the face detector;
    so do the faces in a close-up, here the bystanders cropped from bus.jpg."""
    top, left = 330, 0
    faces = redactor.faces(photo("bus.jpg")[top:720, left:400])
    for x1, y1, x2, y2 in BUS_FACES:
        cx, cy = (x1 + x2) / 2 - left, (y1 + y2) / 2 - top
        assert any(a <= cx <= c and b <= cy <= d for a, b, c, d in faces), (x1, y1, faces)
    assert len(redactor.faces(photo("zidane.jpg"))) >= 2


def boxes(*rows: tuple[float, float, float, float]) -> FloatArray:
    return np.array(rows, dtype=np.float32).reshape(-1, 4)


def test_head_regions_from_whole_and_partial_person_boxes() -> None:
    standing, cut_at_bottom, at_a_corner = head_regions(
        boxes((100, 100, 160, 280), (300, 200, 390, 300), (0, 150, 80, 300)), (400, 300)
    )
    # Standing, 60 x 180: the top 45 px (the width says more than the height) plus margins.
    assert standing == (91, 93, 169, 152)
    # Legs cut off by the frame: sized from the width, so the head is still all inside.
    x1, y1, x2, y2 = cut_at_bottom
    assert (x1, y1, x2) == (286, 189, 400)
    assert y2 - 200 >= 67
    # Cut on two sides: no telling where the head is, so all of it.
    assert at_a_corner == (0, 127, 92, 300)


def test_the_people_log_answers_the_latest_detection_at_or_before_a_time() -> None:
    log = PeopleLog(keep_seconds=10)
    image = np.zeros((300, 400, 3), np.uint8)

    def seen(*rows: tuple[float, float, float, float]) -> Detections:
        names = [0 if i % 2 == 0 else 2 for i in range(len(rows))]  # people and a car
        return Detections.create(boxes(*rows), [0.9] * len(rows), names, COCO)

    log.note(T0, image, seen((1, 1, 5, 5), (50, 50, 90, 90)))
    log.note(T0 + timedelta(seconds=4), image, seen())
    assert log.at(T0 - timedelta(seconds=1)) is None
    first = log.at(T0 + timedelta(seconds=3))
    assert first is not None
    assert first.frame_size == (400, 300)
    assert first.boxes.tolist() == [[1, 1, 5, 5]], "the car is no person"
    later = log.at(T0 + timedelta(hours=1))
    assert later is not None
    assert len(later.boxes) == 0
    log.note(T0 + timedelta(seconds=20), image, seen())
    assert log.at(T0 + timedelta(seconds=3)) is None, "older than the log keeps"


def evidence_of(image: Image, label: EvidenceLabel) -> EvidenceFrame:
    return encode_evidence(image, label, T0, EvidenceSettings(max_width=400))


def test_heads_land_on_the_evidence_picture_below_its_caption_band() -> None:
    people = People((800, 600), boxes((400, 200, 460, 380)))
    [frame_head] = head_regions(people.boxes, people.frame_size)
    band = np.zeros((CAPTION_HEIGHT, 800, 3), np.uint8)
    panorama = evidence_of(
        np.vstack([band, np.zeros((600, 800, 3), np.uint8)]), EvidenceLabel.ENTRY
    )
    [head] = evidence_heads(panorama, people) or []
    assert panorama.width == 400
    assert head == (
        frame_head[0] // 2,
        (frame_head[1] + CAPTION_HEIGHT) // 2,
        -(-frame_head[2] // 2),
        -(-(frame_head[3] + CAPTION_HEIGHT) // 2),
    )
    # A close-up: the crop round the vehicle (15 % margin), enlarged, below a band.
    vehicle = np.array([380, 150, 580, 350], np.float32)
    crop = np.zeros((260, 260, 3), np.uint8)  # 350 .. 610 clipped to 800, 120 .. 380
    closeup = evidence_of(
        np.vstack([np.zeros((CAPTION_HEIGHT, 260, 3), np.uint8), crop]), EvidenceLabel.CLOSEUP
    )
    [in_closeup] = evidence_heads(closeup, people, vehicle) or []
    assert in_closeup[0] == frame_head[0] - 350
    assert in_closeup[1] == frame_head[1] - 120 + CAPTION_HEIGHT
    assert evidence_heads(closeup, people) is None, "no subject, no telling where the crop is"
    odd = evidence_of(np.zeros((100, 400, 3), np.uint8), EvidenceLabel.LATEST)
    assert evidence_heads(odd, people) is None, "a layout it does not know: no guessing"


def frame(image: Image, label: EvidenceLabel = EvidenceLabel.LATEST) -> EvidenceFrame:
    return encode_evidence(image, label, T0, EvidenceSettings())


def test_the_console_copy_is_redacted_and_the_original_untouched(redactor: FaceRedactor) -> None:
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
