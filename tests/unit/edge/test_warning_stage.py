"""The edge's warning stage: warn at the crossing, complied when gone in the grace, opened with
"after" frames when still there; repeat offenders, unreadable plates, fire lanes; and on
vtest.avi's parked van with the real detector, warned-and-stayed and warned-and-gone."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contracts.announce import read_announcement
from contracts.events import EvidenceLabel, Phase, ViolationEvent
from contracts.exemptions import RuleDocument, WarningStageRule
from contracts.rule_signing import sign_document
from contracts.sites import CameraConfig, ZoneConfig, ZoneKind
from edge.config import DetectorSettings, EdgeSettings, EvidenceSettings, TrackerSettings
from edge.detections import Frame, Image
from edge.detector import Detector, create_detector
from edge.exemption_gate import ExemptionGate
from edge.outbox import Outbox
from edge.pipeline import CameraPipeline, GatewayServices
from edge.redaction import EvidenceSealer
from edge.rule_store import RuleStore
from edge.violation_evidence import ViolationEvidence
from edge.warning import Announcements, WarningStage
from edge.zones import PolygonZone
from tests.unit.edge.test_exemption_gate import (
    CAMERA,
    KEY,
    PLATE,
    POLYGON,
    T0,
    event,
    family_bay,
    rule_store,
)
from tests.unit.edge.test_pipeline import KERB as KERB_POLYGON
from tests.unit.edge.test_pipeline import run, vtest

LANE = ZoneConfig(id="lane", kind=ZoneKind.FIRE_LANE, polygon=POLYGON)


def stage_rule(**extra: Any) -> WarningStageRule:
    fields: dict[str, Any] = {
        "id": "warn",
        "site_id": "s1",
        "valid_from": T0 - timedelta(days=1),
        "reason": "先提醒后执法",
        "issued_at": T0,
        "grace_minutes": 5,
        "channels": ["announce", "owner"],
        "repeat_warnings": 2,
        "repeat_days": 30,
    }
    return WarningStageRule(**(fields | extra))


def gate_with(
    store: RuleStore, camera: CameraConfig = CAMERA
) -> tuple[ExemptionGate, Announcements]:
    announcements = Announcements("s1", "g1")
    pictures = {
        zone.id: ViolationEvidence(camera.id, PolygonZone(zone), EvidenceSettings())
        for zone in camera.zones
    }
    stage = WarningStage("s1", "g1", camera, store, pictures, announcements)
    return ExemptionGate(camera, store, stage), announcements


def picture(minutes: float) -> Frame:
    image = np.full((120, 160, 3), 90, np.uint8)
    return Frame(image, 0, T0 + timedelta(minutes=minutes))


def test_warned_then_gone_in_the_grace_is_complied(tmp_path: Path) -> None:
    store = rule_store(tmp_path, stage_rule())
    gate, announcements = gate_with(store)
    violation = uuid.uuid4()
    warned = gate.admit(event(Phase.OPENED, violation, 6, zone="kerb"))
    assert warned is not None
    assert warned.phase is Phase.WARNED
    assert warned.evidence  # the dwell-crossed frames: the "before"
    notice = gate.notice(warned)
    assert notice is not None
    assert notice.grace_until == warned.observed_at + timedelta(minutes=5)
    assert notice.announced
    # During the grace nothing of it leaves, and the camera's frames do not open it.
    assert gate.admit(event(Phase.UPDATED, violation, 8, zone="kerb")) is None
    assert gate.expire(picture(10)) == []
    complied = gate.admit(event(Phase.CLEARED, violation, 10.5, zone="kerb"))
    assert complied is not None
    assert complied.phase is Phase.COMPLIED
    assert gate.notice(complied) == notice
    [said] = announcements.drain(T0)
    assert said.plate == PLATE
    assert said.violation_id == violation
    assert said.text_zh.startswith(PLATE)
    assert "5 min" in said.text_en
    # What a sign reads off the topic passes its own checks.
    assert read_announcement(announcements.topic, said.to_wire()) == said
    assert gate.warnings is not None
    assert gate.warnings.counts["complied"] == 1


def test_warned_and_still_there_opens_with_after_frames_once_the_grace_ends(
    tmp_path: Path,
) -> None:
    store = rule_store(tmp_path, stage_rule())
    gate, _ = gate_with(store)
    violation = uuid.uuid4()
    warned = gate.admit(event(Phase.OPENED, violation, 6, zone="kerb"))
    assert warned is not None
    assert gate.admit(event(Phase.UPDATED, violation, 9, zone="kerb")) is None
    assert gate.expire(picture(10.99)) == []
    [opened] = gate.expire(picture(11))
    assert opened.phase is Phase.OPENED
    assert opened.violation_id == violation
    assert [f.label for f in opened.evidence] == [EvidenceLabel.LATEST, EvidenceLabel.CLOSEUP]
    assert opened.observed_at == T0 + timedelta(minutes=11)
    assert gate.notice(opened) is not None
    assert gate.expire(picture(12)) == []  # once
    # After it opened, its updates and its clear go out as for any case.
    later = event(Phase.UPDATED, violation, 12, zone="kerb")
    assert gate.admit(later) is later
    cleared = event(Phase.CLEARED, violation, 13, zone="kerb")
    assert gate.admit(cleared) is cleared


def test_repeat_offenders_skip_the_warning(tmp_path: Path) -> None:
    document = RuleDocument(
        site_id="s1",
        gateway_id="g1",
        version=1,
        issued_at=T0,
        rules=[stage_rule()],
        repeat_offenders=[PLATE],
    )
    store = rule_store(tmp_path, stage_rule())
    assert store.offer(sign_document(document.model_copy(update={"version": 2}), KEY))
    gate, announcements = gate_with(store)
    opened = event(Phase.OPENED, uuid.uuid4(), 6, zone="kerb")
    assert gate.admit(opened) is opened
    # The same plate read below the floor is never linked: it is warned.
    weak = gate.admit(event(Phase.OPENED, uuid.uuid4(), 6, zone="kerb", confidence=0.3))
    assert weak is not None
    assert weak.phase is Phase.WARNED
    assert announcements.drain(T0)[0].plate is None  # a weak reading is never announced


def test_the_gateway_counts_its_own_warnings_per_plate(tmp_path: Path) -> None:
    store = rule_store(tmp_path, stage_rule(repeat_warnings=2))
    gate, _ = gate_with(store)
    phases = []
    for minutes in (6, 60, 120):
        outcome = gate.admit(event(Phase.OPENED, uuid.uuid4(), minutes, zone="kerb"))
        assert outcome is not None
        phases.append(outcome.phase)
    assert phases == [Phase.WARNED, Phase.WARNED, Phase.OPENED]
    other = gate.admit(event(Phase.OPENED, uuid.uuid4(), 130, zone="kerb", plate="京B54321"))
    assert other is not None
    assert other.phase is Phase.WARNED


def test_fire_lanes_are_enforced_at_once(tmp_path: Path) -> None:
    camera = CameraConfig(id="cam", source="x.avi", zones=[LANE])
    store = rule_store(tmp_path, stage_rule())
    gate, announcements = gate_with(store, camera)
    opened = event(Phase.OPENED, uuid.uuid4(), 6, zone="lane")
    assert gate.admit(opened) is opened
    assert len(announcements) == 0


def test_an_unreadable_plate_in_a_family_bay_is_warned_through_the_stage(tmp_path: Path) -> None:
    store = rule_store(tmp_path, family_bay(), stage_rule(channels=["owner"]))
    gate, announcements = gate_with(store)
    warned = gate.admit(event(Phase.OPENED, uuid.uuid4(), 90, plate=None))
    assert warned is not None
    assert warned.phase is Phase.WARNED
    notice = gate.notice(warned)
    assert notice is not None
    assert not notice.announced  # the rule lists no announce channel
    assert len(announcements) == 0
    assert store.warned == 0  # warned through the stage, not merely held


def test_announcements_wait_for_the_broker_but_not_past_their_grace(tmp_path: Path) -> None:
    store = rule_store(tmp_path, stage_rule(grace_minutes=1))
    gate, announcements = gate_with(store)
    gate.admit(event(Phase.OPENED, uuid.uuid4(), 6, zone="kerb"))
    assert announcements.drain(T0 + timedelta(minutes=8)) == []  # grace ended at minute 7
    assert announcements.stale == 1


def gone_from(seconds: float) -> Callable[[Frame], Image]:
    """Generated: vtest.avi's van never leaves, so from this second its kerb is painted over."""
    (x1, y1), (x2, y2) = KERB_POLYGON[0], KERB_POLYGON[2]

    def edit(frame: Frame) -> Image:
        if frame.index < seconds * 10:
            return frame.image
        image = frame.image.copy()
        image[y1 - 25 : y2 + 25, x1 - 40 : x2] = 128
        return image

    return edit


@pytest.fixture(scope="module")
def detector(model_path: Path) -> Detector:
    return create_detector(DetectorSettings(model=str(model_path)))


def replay(
    folder: Path,
    shared_data: Path,
    detector: Detector,
    grace_minutes: float,
    seconds: float,
    edit: Callable[[Frame], Image] | None = None,
) -> tuple[list[ViolationEvent], Announcements]:
    kerb = ZoneConfig(
        id="kerb", name="东门路边", kind=ZoneKind.NO_PARKING, polygon=KERB_POLYGON, dwell_seconds=2
    )
    camera = CameraConfig(id="cam-road", source="vtest.avi", zones=[kerb])
    rule = stage_rule(valid_from=datetime(2020, 1, 1, tzinfo=UTC), grace_minutes=grace_minutes)
    store = rule_store(folder, rule)
    announcements = Announcements("s1", "g1")
    services = GatewayServices(
        model_info=detector.model_info,
        outbox=Outbox(folder / "outbox.sqlite"),
        sealer=EvidenceSealer(None),
        rules=store,
        announcements=announcements,
    )
    settings = EdgeSettings(data_dir=folder, tracker=TrackerSettings(grace_seconds=1.0))
    pipeline = CameraPipeline("s1", "g1", camera, settings, services, fps=10)
    return run(pipeline, vtest(shared_data, seconds), detector, edit), announcements


def test_vtest_van_warned_and_stayed_opens_after_the_grace(
    tmp_path: Path, shared_data: Path, detector: Detector
) -> None:
    """Real frames, real detector: the van and the car at the kerb cross their 2 s dwell, are
    warned (3 s grace), are still there when the grace ends, and open with the after frames."""
    events, announcements = replay(tmp_path, shared_data, detector, 0.05, 9)
    by_violation = stops(events)
    assert by_violation, "the kerb's van and car cross their dwell"
    first = min(e.observed_at for e in events)
    said = {a.violation_id: a for a in announcements.drain(first)}
    for warned, opened in by_violation.values():
        assert (warned.phase, opened.phase) == (Phase.WARNED, Phase.OPENED)
        assert warned.warning is not None
        assert opened.warning == warned.warning
        assert opened.observed_at >= warned.warning.grace_until
        assert (opened.observed_at - warned.warning.grace_until).total_seconds() < 0.2
        assert any(f.label is EvidenceLabel.DWELL_CROSSED for f in warned.evidence)
        after = [f.label for f in opened.evidence]
        assert after == [EvidenceLabel.LATEST, EvidenceLabel.CLOSEUP]
        # The after frames continue the violation's hash chain from the before frames.
        assert opened.evidence[0].chain_sha256 != warned.evidence[-1].chain_sha256
        assert "东门路边" in said[warned.violation_id].text_zh


def stops(events: list[ViolationEvent]) -> dict[uuid.UUID, list[ViolationEvent]]:
    by_violation: dict[uuid.UUID, list[ViolationEvent]] = {}
    for item in events:
        by_violation.setdefault(item.violation_id, []).append(item)
    return by_violation


def test_vtest_van_warned_and_gone_is_complied(
    tmp_path: Path, shared_data: Path, detector: Detector
) -> None:
    """The same van, warned with a 12 s grace; its kerb painted over from 4 s (generated: it
    never leaves in the clip): the stop clears within the grace and goes out as complied."""
    events, _ = replay(tmp_path, shared_data, detector, 0.2, 10, gone_from(4))
    by_violation = stops(events)
    assert by_violation
    for warned, complied in by_violation.values():
        assert (warned.phase, complied.phase) == (Phase.WARNED, Phase.COMPLIED)
        assert complied.warning == warned.warning
        assert complied.evidence[0].label is EvidenceLabel.CLEARED
