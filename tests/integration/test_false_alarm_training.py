"""False alarms that teach, on a real case: vtest.avi through the edge pipeline with the shared
detector, a no-parking zone over the vans parked top right, the OPENED event stored by ingest as
the server stores it. The dispatcher changes its kind, then closes it as a false alarm: its
close-up lands in the training-data folder in YOLO format, which Ultralytics loads and
models.finetune splits and trains from. A reopen takes the negative back out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from contracts.events import (
    CAPTION_HEIGHT,
    CLOSEUP_MARGIN,
    EvidenceLabel,
    ModelInfo,
    Phase,
    ViolationEvent,
    ViolationKind,
)
from contracts.sites import CameraConfig, ZoneConfig, ZoneKind
from dispatch.config import Department, Role
from dispatch.metrics import TrainingDataMetrics
from dispatch.training_data import TRAINING_CLASSES, TrainingDataExporter
from dispatch.workflow import Action, Actor, CloseReason, Command, Workflow
from edge.capture import ReplaySource
from edge.config import DetectorSettings, EdgeSettings
from edge.detector import create_detector
from edge.outbox import Outbox
from edge.pipeline import CameraPipeline, GatewayServices
from edge.redaction import EvidenceSealer
from edge.violation_evidence import margin_region
from models.finetune import FinetuneSettings, finetune, split_corrections
from storage.audit import verify_chain
from storage.database import SessionFactory
from storage.evidence_store import EvidenceStore
from storage.tables import Case
from tests.factories import CAMERA, GATEWAY, PARKING_ZONE, SITE, T0, make_ingest, migrated_database

DISPATCHER = Actor("desk", Role.DISPATCHER)
VANS = [[600, 20], [768, 20], [768, 130], [600, 130]]  # vtest.avi: parked the whole clip
FRAME = (768, 576)  # vtest.avi's width, height


@pytest.fixture(scope="module")
def vtest_opened(
    model_path: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> ViolationEvent:
    """The OPENED event the edge raises on vtest.avi (about 30 frames with a 3 s dwell)."""
    folder = tmp_path_factory.mktemp("edge")
    zone = ZoneConfig(id=PARKING_ZONE, kind=ZoneKind.NO_PARKING, polygon=VANS, dwell_seconds=3)
    camera = CameraConfig(id=CAMERA, source="vtest.avi", zones=[zone])
    services = GatewayServices(
        model_info=ModelInfo(name=model_path.name, version="test"),
        outbox=Outbox(folder / "outbox.sqlite"),
        sealer=EvidenceSealer(None),
    )
    settings = EdgeSettings(data_dir=folder)
    pipeline = CameraPipeline(SITE, GATEWAY, camera, settings, services, fps=10)
    detector = create_detector(DetectorSettings(model=str(model_path)))
    for frame in ReplaySource(shared_data / "clips" / "vtest.avi", start=T0):
        for event in pipeline.process(frame, detector.detect(frame.image)):
            if event.phase is Phase.OPENED:
                return event
        if frame.index > 200:
            break
    pytest.fail("vtest.avi raised no violation over the parked vans")


@dataclass
class Rig:
    sessions: SessionFactory
    store: EvidenceStore
    exporter: TrainingDataExporter
    workflow: Workflow
    folder: Path


@pytest.fixture
def rig(database_url: str, tmp_path: Path, vtest_opened: ViolationEvent) -> Iterator[Rig]:
    with migrated_database(database_url) as (_engine, sessions):
        ingest = make_ingest(sessions, tmp_path / "evidence")
        ingest.service.store(vtest_opened)
        exporter = TrainingDataExporter(
            sessions, ingest.evidence_store, tmp_path / "training", TrainingDataMetrics()
        )
        workflow = Workflow(on_committed=exporter.on_committed)
        try:
            yield Rig(sessions, ingest.evidence_store, exporter, workflow, tmp_path / "training")
        finally:
            exporter.close()


def _act(rig: Rig, actor: Actor, command: Command) -> None:
    with rig.sessions() as session:
        case = session.scalars(select(Case)).one()
        rig.workflow.apply(session, case, command, actor)
        session.commit()
    rig.exporter.drain()


def _expected_line(event: ViolationEvent, width: int, height: int) -> list[float]:
    """Where the edge put the object in its close-up (its own crop), as YOLO numbers."""
    assert event.object is not None
    b = event.object.box
    box = np.array([b.x1, b.y1, b.x2, b.y2])
    left, top, right, _ = margin_region((FRAME[1], FRAME[0]), box, CLOSEUP_MARGIN)
    scale = width / (right - left)
    x1, x2 = (b.x1 - left) * scale, (b.x2 - left) * scale
    y1, y2 = CAPTION_HEIGHT + (b.y1 - top) * scale, CAPTION_HEIGHT + (b.y2 - top) * scale
    class_id = TRAINING_CLASSES.index(event.object.class_name)
    return [
        class_id,
        (x1 + x2) / 2 / width,
        (y1 + y2) / 2 / height,
        (x2 - x1) / width,
        (y2 - y1) / height,
    ]


def _load_with_ultralytics(data_yaml: Path, images: Path) -> tuple[dict[str, Any], list[Any]]:
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(data_yaml))
    dataset = YOLODataset(img_path=str(images), data=data, task="detect", imgsz=320, augment=False)
    return data, list(dataset.labels)


def test_a_real_case_closed_as_a_false_alarm_becomes_yolo_data(
    rig: Rig, vtest_opened: ViolationEvent
) -> None:
    closeup = next(f for f in vtest_opened.evidence if f.label is EvidenceLabel.CLOSEUP)
    camera = rig.folder / CAMERA
    with rig.sessions() as session:
        case = session.scalars(select(Case)).one()
        case_id, state, department = case.id, case.state, case.department
    assert state == "dispatched", "the default route sends it to a department"
    assert department is not None
    worker = Actor("officer-1", Role.WORKER, Department(department))

    # A kind change: the object is real, so it is labelled with its class where the edge cut it.
    lane = Command(
        Action.RECLASSIFY, "the kerb is the fire lane", kind=ViolationKind.FIRE_LANE_BLOCKING
    )
    _act(rig, DISPATCHER, lane)
    name = f"case{case_id}-{closeup.sha256[:16]}"
    image, label = camera / "images" / f"{name}.jpg", camera / "labels" / f"{name}.txt"
    assert image.read_bytes() == closeup.data, "the stored close-up, byte for byte"
    (line,) = label.read_text().splitlines()
    numbers = [float(v) for v in line.split()]
    assert numbers == pytest.approx(
        _expected_line(vtest_opened, closeup.width, closeup.height), abs=0.01
    )
    data, labels = _load_with_ultralytics(camera / "data.yaml", camera / "images")
    assert data["nc"] == len(TRAINING_CLASSES)
    assert [len(item["cls"]) for item in labels] == [1]

    # The false alarm: the same close-up becomes a hard negative, with the reason beside it.
    _act(rig, worker, Command(Action.RETURN, reason="nothing is parked there"))
    false_alarm = Command(Action.CLOSE, "a reflection", close_reason=CloseReason.FALSE_ALARM)
    _act(rig, DISPATCHER, false_alarm)
    assert label.read_text() == ""
    reason = json.loads((camera / "reasons" / f"{name}.json").read_text())
    assert reason["close_reason"] == "false_alarm"
    assert (reason["case_id"], reason["reason"], reason["label"]) == (
        case_id,
        "a reflection",
        "negative",
    )
    assert reason["evidence_sha256"] == closeup.sha256
    _, labels = _load_with_ultralytics(camera / "data.yaml", camera / "images")
    assert [len(item["cls"]) for item in labels] == [0], "an empty label: background"

    summary = split_corrections(rig.folder)
    assert summary.images == {"train": 1, "val": 1}
    assert summary.val_is_train, "one case: val repeats train"
    split, _ = _load_with_ultralytics(summary.data_yaml, rig.folder / CAMERA / "images")
    assert Path(split["train"]).name == "train.txt"
    settings = FinetuneSettings(model="yolo11n.yaml", epochs=1, imgsz=64, batch=1)
    trained = finetune(rig.folder, settings, rig.folder.parent / "runs")  # what the CLI runs
    assert trained.weights.is_file()

    # Reopened: not a false alarm after all. The negative goes; the kind change stands.
    _act(rig, DISPATCHER, Command(Action.REOPEN, reason="it was a van after all"))
    assert label.read_text().splitlines() == [line]
    assert json.loads((camera / "reasons" / f"{name}.json").read_text())["label"] == "object"
    with rig.sessions() as session:
        assert verify_chain(session).intact
