"""Corrections that teach: the close reason, RECLASSIFY, the after-commit hook and the exporter's
failures, on a real database. The frames here are small factory JPEGs; the real vtest.avi case
is in tests/integration/test_false_alarm_training.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import select

from contracts.events import CAPTION_HEIGHT, CLOSEUP_MARGIN, EvidenceLabel, ViolationKind
from dispatch.config import Department, Role
from dispatch.false_alarms import CameraFalseAlarms, false_alarm_rates, false_alarm_table
from dispatch.metrics import CameraFalseAlarmCollector, TrainingDataMetrics
from dispatch.schemas import CaseAction
from dispatch.training_data import TrainingDataExporter, closeup_box
from dispatch.web.i18n import LANGUAGES, translator
from dispatch.workflow import Action, Actor, CloseReason, Command, MissingInputError, Workflow
from edge.config import EvidenceSettings
from edge.evidence import caption_band, encode_evidence
from edge.violation_evidence import crop_with_margin, margin_region
from storage.database import SessionFactory
from storage.tables import Case, utcnow
from tests.factories import CAMERA, T0, EventFactory, make_frame, make_ingest

DISPATCHER = Actor("desk", Role.DISPATCHER)
WORKER = Actor("officer-1", Role.WORKER, Department.LAW_ENFORCEMENT)


# --- where the object sits in its close-up -----------------------------------------------------


def _edge_closeup(frame_size: tuple[int, int], box: tuple[float, ...]) -> tuple[int, int]:
    """The (width, height) of the close-up the edge makes: its own crop, enlargement and band."""
    width, height = frame_size
    image = np.zeros((height, width, 3), np.uint8)
    settings = EvidenceSettings()
    crop = crop_with_margin(image, np.array(box), margin=CLOSEUP_MARGIN)
    # As edge.violation_evidence.ViolationEvidence.closeup does:
    if crop.shape[1] < settings.closeup_min_width:
        scale = settings.closeup_min_width / crop.shape[1]
        size = (settings.closeup_min_width, max(1, round(crop.shape[0] * scale)))
        crop = np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC), np.uint8)
    frame = encode_evidence(caption_band(crop, "x"), EvidenceLabel.CLOSEUP, T0, settings)
    return frame.width, frame.height


@pytest.mark.parametrize(
    "box",
    [
        (300.0, 200.0, 360.0, 260.0),  # inside the frame
        (733.5, 50.85, 767.7, 93.75),  # at the right edge: vtest.avi's parked van
        (100.0, 520.0, 180.0, 575.0),  # at the bottom edge
        (0.0, 0.0, 40.0, 30.0),  # at the top-left corner
        (100.0, 100.0, 700.0, 500.0),  # bigger than the enlargement: not scaled
    ],
)
def test_the_box_is_placed_where_the_edge_cut_the_close_up(box: tuple[float, ...]) -> None:
    frame_size = (768, 576)
    width, height = _edge_closeup(frame_size, box)
    left, top, right, _bottom = margin_region((frame_size[1], frame_size[0]), np.array(box), 0.15)
    scale = width / (right - left)
    expected = (
        (box[0] - left) * scale,
        CAPTION_HEIGHT + (box[1] - top) * scale,
        (box[2] - left) * scale,
        CAPTION_HEIGHT + (box[3] - top) * scale,
    )
    placed = closeup_box((box[0], box[1], box[2], box[3]), width, height)
    assert placed is not None
    assert placed == pytest.approx(expected, abs=1.5)


# --- the workflow: reasons, RECLASSIFY, the hook ------------------------------------------------


@dataclass
class Rig:
    sessions: SessionFactory
    exporter: TrainingDataExporter
    metrics: TrainingDataMetrics
    folder: Path
    store_path: Path


@pytest.fixture
def rig(session_factory: SessionFactory, tmp_path: Path) -> Iterator[Rig]:
    """One dispatched case from a factory event whose frames include a close-up."""
    ingest = make_ingest(session_factory, tmp_path / "evidence")
    events = EventFactory()
    event = events.event()
    closeup = make_frame(99, EvidenceLabel.CLOSEUP)
    ingest.service.store(event.model_copy(update={"evidence": [*event.evidence, closeup]}))
    metrics = TrainingDataMetrics()
    exporter = TrainingDataExporter(
        session_factory, ingest.evidence_store, tmp_path / "training", metrics
    )
    yield Rig(
        session_factory,
        exporter,
        metrics,
        tmp_path / "training",
        ingest.evidence_store.path(closeup.sha256),
    )
    exporter.close()


def _act(rig: Rig, workflow: Workflow, actor: Actor, command: Command) -> int:
    with rig.sessions() as session:
        case = session.scalars(select(Case)).one()
        workflow.apply(session, case, command, actor, T0)
        session.commit()
        return case.id


def _false_alarm(rig: Rig, workflow: Workflow) -> int:
    _act(rig, workflow, WORKER, Command(Action.RETURN, reason="nothing parked there"))
    close = Command(Action.CLOSE, reason="a shadow", close_reason=CloseReason.FALSE_ALARM)
    return _act(rig, workflow, DISPATCHER, close)


def test_the_hook_hears_committed_actions_only_and_its_failure_reaches_nobody(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[tuple[Action, int]] = []
    workflow = Workflow(on_committed=lambda action, case_id: heard.append((action, case_id)))
    with rig.sessions() as session:
        case = session.scalars(select(Case)).one()
        workflow.apply(session, case, Command(Action.NOTE, reason="never kept"), DISPATCHER)
        session.rollback()
        workflow.apply(session, case, Command(Action.NOTE, reason="kept"), DISPATCHER)
        session.commit()
        assert heard == [(Action.NOTE, case.id)]

    def broken(_action: Action, _case_id: int) -> None:
        raise OSError("disk full")

    case_id = _act(rig, Workflow(on_committed=broken), DISPATCHER, Command(Action.NOTE, "x"))
    assert "after-commit hook failed for note on case" in caplog.text
    with rig.sessions() as session:
        assert [t.reason for t in session.get_one(Case, case_id).transitions][-1] == "x"


def test_close_reason_and_kind_are_checked_and_recorded(rig: Rig) -> None:
    workflow = Workflow()
    with pytest.raises(MissingInputError, match="close_reason applies to close, not note"):
        _act(rig, workflow, DISPATCHER, Command(Action.NOTE, "x", close_reason=CloseReason.OTHER))
    with pytest.raises(MissingInputError, match="needs the kind it is"):
        _act(rig, workflow, DISPATCHER, Command(Action.RECLASSIFY, "wrong kind"))
    same = Command(Action.RECLASSIFY, "same", kind=ViolationKind.ILLEGAL_PARKING)
    with pytest.raises(MissingInputError, match="already illegal_parking"):
        _act(rig, workflow, DISPATCHER, same)
    lane = Command(Action.RECLASSIFY, "it is the fire lane", kind=ViolationKind.FIRE_LANE_BLOCKING)
    _act(rig, workflow, DISPATCHER, lane)
    _false_alarm(rig, workflow)
    with rig.sessions() as session:
        case = session.scalars(select(Case)).one()
        assert case.kind == "fire_lane_blocking"
        reclassify, close = case.transitions[-3], case.transitions[-1]
    assert (reclassify.action, reclassify.to_state) == ("reclassify", "dispatched")
    assert reclassify.detail == {"from_kind": "illegal_parking", "kind": "fire_lane_blocking"}
    assert (close.action, close.detail) == ("close", {"close_reason": "false_alarm"})


def test_requests_without_the_new_fields_stay_valid() -> None:
    plain = CaseAction.model_validate({"action": "close", "reason": "filed"})
    assert plain.command() == Command(Action.CLOSE, reason="filed")
    body = {"action": "reclassify", "reason": "r", "kind": "fire_lane_blocking"}
    assert CaseAction.model_validate(body).command().kind is ViolationKind.FIRE_LANE_BLOCKING
    close = CaseAction.model_validate({"action": "close", "close_reason": "false_alarm"})
    assert close.command().close_reason is CloseReason.FALSE_ALARM


# --- the exporter -----------------------------------------------------------------------------


def test_a_false_alarm_is_exported_once_and_counted_per_camera(rig: Rig) -> None:
    workflow = Workflow(on_committed=rig.exporter.on_committed)
    case_id = _false_alarm(rig, workflow)
    rig.exporter.drain()
    camera = rig.folder / CAMERA
    (image,) = (camera / "images").iterdir()
    assert image.name.startswith(f"case{case_id}-")
    assert (camera / "labels" / f"{image.stem}.txt").read_text() == ""  # a hard negative
    assert image.read_bytes() == rig.store_path.read_bytes()
    assert rig.exporter.pump_all() == 0, "the cursor moved: nothing twice"
    assert rig.metrics.items.labels(label="negative")._value.get() == 1

    with rig.sessions() as session:
        (row,) = false_alarm_rates(session)
    assert (row.camera_id, row.cases, row.false_alarms, row.rate) == (CAMERA, 1, 1, 1.0)
    registry = CollectorRegistry()
    registry.register(CameraFalseAlarmCollector(rig.sessions))
    text = generate_latest(registry).decode()
    assert f'civicwatch_camera_false_alarm_ratio{{camera="{CAMERA}"}} 1.0' in text


def test_a_reopened_false_alarm_leaves_the_training_data(rig: Rig) -> None:
    workflow = Workflow(on_committed=rig.exporter.on_committed)
    _false_alarm(rig, workflow)
    rig.exporter.drain()
    assert list((rig.folder / CAMERA / "images").iterdir())
    _act(rig, workflow, DISPATCHER, Command(Action.REOPEN, reason="it was there after all"))
    rig.exporter.drain()
    for sub in ("images", "labels", "reasons"):
        assert not list((rig.folder / CAMERA / sub).iterdir()), sub
    with rig.sessions() as session:
        assert [row.false_alarms for row in false_alarm_rates(session)] == [0]


def test_a_plain_close_exports_nothing_and_is_no_false_alarm(rig: Rig) -> None:
    workflow = Workflow(on_committed=rig.exporter.on_committed)
    _act(rig, workflow, WORKER, Command(Action.RETURN, reason="not ours"))
    _act(rig, workflow, DISPATCHER, Command(Action.CLOSE, reason="filed"))
    rig.exporter.drain()
    assert not (rig.folder / CAMERA / "images").exists()
    with rig.sessions() as session:
        assert [row.false_alarms for row in false_alarm_rates(session)] == [0]


def test_a_failed_write_is_logged_and_counted_never_raised(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.store_path.unlink()  # the close-up's file is gone from the evidence store
    with caplog.at_level(logging.ERROR):
        _false_alarm(rig, Workflow(on_committed=rig.exporter.on_committed))
        rig.exporter.drain()
    assert rig.metrics.failures._value.get() == 1
    assert "not written" in caplog.text
    with rig.sessions() as session:
        assert session.scalars(select(Case)).one().state == "closed"


def test_a_department_counts_only_its_own_cases(rig: Rig) -> None:
    _false_alarm(rig, Workflow())
    with rig.sessions() as session:
        assert [row.false_alarms for row in false_alarm_rates(session, "law_enforcement")] == [1]
        assert false_alarm_rates(session, "fire_rescue") == []
        assert false_alarm_rates(session, since=utcnow() + timedelta(days=1)) == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_console_table_names_its_columns_and_escapes_camera_ids(language: str) -> None:
    t = translator(language)
    rows = [
        CameraFalseAlarms(camera_id="<cam>", cases=4, false_alarms=3, reclassified=1),
        CameraFalseAlarms(camera_id="cam-2", cases=5, false_alarms=0, reclassified=0),
    ]
    html = str(false_alarm_table(rows, t))
    assert "&lt;cam&gt;" in html
    assert "<cam>" not in html
    assert "<td>75%</td>" in html
    for key in ("ui.false_alarms", "ui.reclassified", "ui.false_alarm_rate"):
        assert f"<th>{t(key)}</th>" in html
        assert t(key) != key
    assert t("ui.no_data") in str(false_alarm_table([], t))
