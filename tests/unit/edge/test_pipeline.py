"""One camera's pipeline on real vtest.avi frames: fire lanes, the fallback, structures, sealing.

Outcomes land in a real SQLite outbox; the detector is the real YOLO11n where one is used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest

from contracts.events import EvidenceLabel, Phase, ViolationEvent, ViolationKind, broken_link
from contracts.sites import STATIONARY_OBJECT, CameraConfig, ZoneConfig, ZoneKind
from edge.capture import ReplaySource
from edge.config import DetectorSettings, EdgeSettings, StructureSettings
from edge.detections import Frame, Image, box_iou
from edge.detector import Detector, create_detector
from edge.outbox import Outbox
from edge.pipeline import CameraPipeline, GatewayServices
from edge.redaction import EvidenceSealer
from edge.structure_features import LearnedParts, gateway_learned_parts
from edge.structures import BaselineStore
from tests.unit.edge.conftest import T0
from tests.unit.edge.scenes import FIRE_LANE, SHED, STACK, with_shed, with_stack

CAMERA = "cam-road"
# The kerb by the building where a white van and a car stay parked all through the clip.
KERB = [[600, 30], [768, 30], [768, 118], [600, 118]]


def vtest(shared_data: Path, seconds: float | None = None) -> Iterable[Frame]:
    frames = ReplaySource(shared_data / "clips" / "vtest.avi", start=T0)
    return frames if seconds is None else islice(frames, round(seconds * 10))


def pipeline(
    tmp_path: Path,
    zones: list[ZoneConfig],
    detector: Detector | None,
    settings: EdgeSettings | None = None,
    structure_parts: LearnedParts | None = None,
) -> CameraPipeline:
    settings = settings or EdgeSettings(data_dir=tmp_path)
    services = GatewayServices(
        model_info=detector.model_info if detector is not None else None,
        outbox=Outbox(tmp_path / "outbox.sqlite"),
        sealer=EvidenceSealer(None),
        baselines=BaselineStore(tmp_path / "baselines"),
        structure_parts=structure_parts,
    )
    camera = CameraConfig(id=CAMERA, source="vtest.avi", zones=zones)
    return CameraPipeline("site-a", "gw-1", camera, settings, services, fps=10)


def run(
    camera: CameraPipeline,
    frames: Iterable[Frame],
    detector: Detector | None,
    edit: Callable[[Frame], Image] | None = None,
) -> list[ViolationEvent]:
    events: list[ViolationEvent] = []
    for frame in frames:
        shown = frame if edit is None else Frame(edit(frame), frame.index, frame.timestamp)
        detections = detector.detect_batch([shown.image])[0] if detector is not None else None
        events += camera.process(shown, detections)
    return events


@pytest.fixture(scope="module")
def detector(model_path: Path) -> Detector:
    return create_detector(DetectorSettings(model=str(model_path)))


def lane(dwell: float) -> ZoneConfig:
    return ZoneConfig(
        id="fire-lane", kind=ZoneKind.FIRE_LANE, polygon=FIRE_LANE, dwell_seconds=dwell
    )


def stack_from(seconds: float) -> Callable[[Frame], Image]:
    """Generated: the drawn stack of boxes stands on the road from this second of the clip."""
    return lambda frame: with_stack(frame.image) if frame.index >= seconds * 10 else frame.image


def test_without_a_detector_stacked_goods_in_a_fire_lane_still_raise(
    tmp_path: Path, shared_data: Path
) -> None:
    """The fallback: no model, the class-agnostic path alone. Generated stack on real frames."""
    camera = pipeline(tmp_path, [lane(dwell=10)], detector=None)
    assert not camera.uses_detector
    events = run(camera, vtest(shared_data, 45), None, stack_from(8))
    opened = [e for e in events if e.phase is Phase.OPENED]
    assert len(opened) == 1, [(e.phase, e.object) for e in events]
    event = opened[0]
    assert event.kind is ViolationKind.FIRE_LANE_BLOCKING
    assert event.object is not None
    assert event.object.class_name == STATIONARY_OBJECT
    assert event.model is None, "no model: the event says none made it"
    lane_area = float(cv2.contourArea(np.array(FIRE_LANE, np.float32)))
    stack_area = (STACK[2] - STACK[0]) * (STACK[3] - STACK[1])
    assert event.blocked_share == pytest.approx(stack_area / lane_area, rel=0.35)
    assert broken_link(event.evidence) is None


@pytest.mark.slow
def test_a_parked_van_in_a_fire_lane_is_one_violation_not_two(
    tmp_path: Path, shared_data: Path, detector: Detector
) -> None:
    """The detector's truck and the foreground path must not both raise the van."""
    kerb = ZoneConfig(id="kerb-lane", kind=ZoneKind.FIRE_LANE, polygon=KERB, dwell_seconds=20)
    camera = pipeline(tmp_path, [kerb], detector)
    events = run(camera, vtest(shared_data, 40), detector)
    opened = [e for e in events if e.phase is Phase.OPENED]
    assert sorted(e.object.class_name for e in opened if e.object) in (
        ["car", "truck"],
        ["car", "car"],
    )
    assert all(e.blocked_share is not None and e.blocked_share > 0.1 for e in opened)
    labels = [f.label for f in opened[0].evidence]
    assert labels[0] is EvidenceLabel.ENTRY
    assert labels[-1] is EvidenceLabel.CLOSEUP


LAWN = ZoneConfig(
    id="lawn", kind=ZoneKind.NO_BUILD, polygon=[[10, 330], [380, 380], [420, 570], [10, 570]]
)


def structure_settings(tmp_path: Path) -> EdgeSettings:
    return EdgeSettings(
        data_dir=tmp_path,
        structures=StructureSettings(
            check_interval_seconds=20, persist_checks=3, persist_span_seconds=30
        ),
    )


def shed_from_the_fifth_second(frame: Frame) -> Image:
    """Generated: the shed painted onto the lawn from frame 50 on."""
    return with_shed(frame.image) if frame.index >= 50 else frame.image


def test_a_new_structure_in_a_no_build_zone_opens_once_with_its_evidence(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Generated: a shed painted onto the lawn stays over three checks 20 s apart.

    No detector backbone: the class-agnostic gradient comparison, and the log says so.
    """
    with caplog.at_level(logging.WARNING, logger="edge.pipeline"):
        camera = pipeline(tmp_path, [LAWN], None, structure_settings(tmp_path))
    assert "class-agnostic gradient comparison" in caplog.text
    first = next(iter(vtest(shared_data, 0.1)))
    BaselineStore(tmp_path / "baselines").register(CAMERA, first.image)

    events = run(camera, vtest(shared_data), None, shed_from_the_fifth_second)
    assert [e.phase for e in events] == [Phase.OPENED]
    event = events[0]
    assert event.kind is ViolationKind.ILLEGAL_STRUCTURE
    assert [f.label for f in event.evidence] == [
        EvidenceLabel.BASELINE,
        EvidenceLabel.CURRENT,
        EvidenceLabel.CHANGE_MASK,
    ]
    assert event.object is not None
    box = event.object.box
    shed_box = np.array(SHED, dtype=np.float32)
    found = np.array([box.x1, box.y1, box.x2, box.y2], dtype=np.float32)
    assert box_iou(found, shed_box) > 0.3, found


def test_events_land_in_the_outbox_with_increasing_sequences(
    tmp_path: Path, shared_data: Path
) -> None:
    camera = pipeline(tmp_path, [lane(dwell=5)], detector=None)
    events = run(camera, vtest(shared_data, 30), None, stack_from(5))
    assert events
    assert [e.sequence for e in events] == list(range(len(events)))


def test_with_the_detectors_backbone_the_structure_watch_runs_the_learned_comparison(
    tmp_path: Path, shared_data: Path, model_path: Path, detector: Detector
) -> None:
    """The same generated shed; frames the detector skipped: the watch runs it, with the change
    net, at each check."""
    parts = gateway_learned_parts(str(model_path), detector)
    assert parts is not None
    assert parts.net is not None  # the shipped change net (edge.structure_net)
    camera = pipeline(tmp_path, [LAWN], None, structure_settings(tmp_path), parts)
    assert [watch.method for watch in camera._structures] == ["learned + change net"]
    first = next(iter(vtest(shared_data, 0.1)))
    BaselineStore(tmp_path / "baselines").register(CAMERA, first.image)

    events = run(camera, vtest(shared_data), None, shed_from_the_fifth_second)
    assert [e.phase for e in events] == [Phase.OPENED]
    assert events[0].object is not None
    box = events[0].object.box
    found = np.array([box.x1, box.y1, box.x2, box.y2], dtype=np.float32)
    assert box_iou(found, np.array(SHED, dtype=np.float32)) > 0.3, found


def test_without_a_detector_or_an_openvino_export_no_learned_parts_are_built(
    model_path: Path, detector: Detector
) -> None:
    assert gateway_learned_parts(str(model_path), None) is None
    assert gateway_learned_parts("yolo11n.pt", detector) is None
    assert gateway_learned_parts(str(model_path / "missing_openvino_model"), detector) is None
