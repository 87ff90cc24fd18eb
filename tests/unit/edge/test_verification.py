"""The gateway's zone re-check on real vtest.avi frames with generated scenes.

The scenes are GENERATED: a drawn stack of boxes (tests/unit/edge/scenes.py) stands on the
road of the real clip, or it does not. No detector: the fire lane's class-agnostic path is the
zone test the rule itself uses, so what the verifier reports is what the rule sees.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest

from contracts.events import EvidenceLabel, ViolationKind, broken_link
from contracts.sites import STATIONARY_OBJECT, CameraConfig, ZoneConfig, ZoneKind
from contracts.verification import VerificationRequest, VerificationResult
from edge.capture import ReplaySource
from edge.config import EdgeSettings, RedactionSettings
from edge.detections import Frame
from edge.outbox import Outbox
from edge.pipeline import CameraPipeline, GatewayServices
from edge.redaction import EvidenceSealer, FaceRedactor
from edge.verification import CAMERA_UNAVAILABLE, ZoneVerifier
from tests.unit.edge.conftest import T0
from tests.unit.edge.scenes import FIRE_LANE, STACK, with_stack

SITE, GATEWAY, CAMERA = "site-a", "gw-1", "cam-road"
LANE = "fire-lane"
WARM_UP_SECONDS = 30  # the stack stands from second 5: long enough to be stationary


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_pipeline(tmp_path: Path, sealer: EvidenceSealer) -> CameraPipeline:
    settings = EdgeSettings(data_dir=tmp_path)
    services = GatewayServices(
        model_info=None, outbox=Outbox(tmp_path / "outbox.sqlite"), sealer=sealer
    )
    lane = ZoneConfig(id=LANE, kind=ZoneKind.FIRE_LANE, polygon=FIRE_LANE, dwell_seconds=600)
    camera = CameraConfig(id=CAMERA, source="vtest.avi", zones=[lane])
    return CameraPipeline(SITE, GATEWAY, camera, settings, services, fps=10)


def request(zone_id: str = LANE, camera_id: str = CAMERA) -> VerificationRequest:
    return VerificationRequest(
        request_id=uuid.uuid4(),
        case_id=7,
        site_id=SITE,
        gateway_id=GATEWAY,
        camera_id=camera_id,
        zone_id=zone_id,
        kind=ViolationKind.FIRE_LANE_BLOCKING,
        requested_at=datetime.now(UTC),
        deadline_seconds=30,
    )


def frames(shared_data: Path, stack: bool) -> Iterator[Frame]:
    """Real frames; with ``stack`` the GENERATED stack of boxes stands on the road from 5 s."""
    for frame in ReplaySource(shared_data / "clips" / "vtest.avi", start=T0):
        if stack and frame.index >= 50:
            yield Frame(with_stack(frame.image), frame.index, frame.timestamp)
        else:
            yield frame


def check(
    tmp_path: Path, shared_data: Path, stack: bool, sealer: EvidenceSealer | None = None
) -> tuple[VerificationResult, ZoneVerifier]:
    """Warm the pipeline up, ask for a check, feed frames until it answers."""
    sealer = sealer or EvidenceSealer(None)
    pipeline = make_pipeline(tmp_path, sealer)
    verifier = ZoneVerifier(
        SITE, GATEWAY, {CAMERA: pipeline}, EdgeSettings().evidence, sealer, clock=Clock()
    )
    source = frames(shared_data, stack)
    for frame in islice(source, WARM_UP_SECONDS * 10):
        pipeline.process(frame, None)
    assert verifier.submit(request()) is None, "a live camera answers after looking"
    for frame in islice(source, 10):
        pipeline.process(frame, None)
        answers = verifier.observe(CAMERA, frame)
        if answers:
            assert len(answers) == 1
            return answers[0], verifier
    pytest.fail("no answer after 10 frames")


def test_a_blocked_lane_is_not_clear_and_says_what_is_there(
    tmp_path: Path, shared_data: Path
) -> None:
    """GENERATED scene: the drawn stack stands in the lane when the check runs."""
    result, verifier = check(tmp_path, shared_data, stack=True)
    assert not result.clear
    assert result.frames_checked == 5
    assert [o.class_name for o in result.objects] == [STATIONARY_OBJECT]
    box = result.objects[0].box
    overlap = box_iou((box.x1, box.y1, box.x2, box.y2), STACK)
    assert overlap > 0.3, f"the reported object {box} is not the stack {STACK}"
    assert result.blocked_share is not None
    assert result.blocked_share > 0.02
    assert STATIONARY_OBJECT in result.detail
    assert result.evidence is not None
    assert result.evidence.label is EvidenceLabel.LATEST
    assert cv2.imdecode(np.frombuffer(result.evidence.data, np.uint8), cv2.IMREAD_COLOR) is not None
    assert broken_link([result.evidence]) is None, "sealed like violation evidence"
    assert verifier.pending == 0
    again = VerificationResult.model_validate_json(result.to_wire())
    assert again == result


def test_an_empty_lane_is_clear_with_a_sealed_redacted_frame(
    tmp_path: Path, shared_data: Path
) -> None:
    """GENERATED scene: no stack; people walk through the real lane but none stands still."""
    sealer = EvidenceSealer(FaceRedactor(RedactionSettings()))
    result, _ = check(tmp_path, shared_data, stack=False, sealer=sealer)
    assert result.clear, result.detail
    assert result.objects == []
    assert result.frames_checked == 5
    assert result.evidence is not None
    assert result.evidence.label is EvidenceLabel.CLEARED
    assert result.evidence.redacted is not None
    assert (
        result.evidence.chain_sha256
        == hashlib.sha256(("0" * 64 + result.evidence.sha256).encode()).hexdigest()
    )


def test_an_unknown_or_dead_camera_answers_at_once(tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path, EvidenceSealer(None))
    dead = ZoneVerifier(
        SITE,
        GATEWAY,
        {CAMERA: pipeline},
        EdgeSettings().evidence,
        available=lambda camera_id: False,
    )
    answer = dead.submit(request())
    assert answer is not None
    assert (answer.clear, answer.frames_checked, answer.detail) == (False, 0, CAMERA_UNAVAILABLE)
    live = ZoneVerifier(SITE, GATEWAY, {CAMERA: pipeline}, EdgeSettings().evidence)
    unknown = live.submit(request(camera_id="cam-elsewhere"))
    assert unknown is not None
    assert unknown.detail == CAMERA_UNAVAILABLE
    no_zone = live.submit(request(zone_id="no-such-zone"))
    assert no_zone is not None
    assert not no_zone.clear
    assert "no-such-zone" in no_zone.detail
    assert live.pending == 0


def test_a_camera_without_frames_answers_unavailable_at_the_deadline(tmp_path: Path) -> None:
    clock = Clock()
    pipeline = make_pipeline(tmp_path, EvidenceSealer(None))
    verifier = ZoneVerifier(SITE, GATEWAY, {CAMERA: pipeline}, EdgeSettings().evidence, clock=clock)
    asked = request()
    assert verifier.submit(asked) is None
    assert verifier.submit(asked) is None, "a redelivered request is one check"
    clock.now = 29.0
    assert verifier.expire() == []
    clock.now = 31.0
    [answer] = verifier.expire()
    assert answer.request_id == asked.request_id
    assert not answer.clear
    assert answer.frames_checked == 0
    assert answer.detail.startswith(CAMERA_UNAVAILABLE)
    assert verifier.submit(asked) == answer, "asked again after answering: the same answer"


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area else 0.0
