"""The edge applies the rule document: exempt stops never reach the outbox, a lapsed exemption
opens then, an unreadable plate in a family bay is warned and held; on vtest.avi's parked van."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from contracts.events import BoundingBox, EvidenceFrame, ObservedObject, Phase, PlateReading
from contracts.exemptions import FamilyBayRule, PermitRule, RuleDocument, TimeWindowRule
from contracts.rule_signing import (
    generate_key_pair,
    private_key_from_text,
    public_key_from_text,
    sign_document,
)
from contracts.sites import CameraConfig, SiteConfig, ZoneConfig, ZoneKind
from edge.config import DetectorSettings, EdgeSettings
from edge.detector import create_detector
from edge.exemption_gate import ExemptionGate
from edge.outbox import Outbox
from edge.pipeline import CameraPipeline, GatewayServices
from edge.redaction import EvidenceSealer
from edge.rule_store import RuleStore
from edge.rules import RuleEvent
from tests.factories import make_frame
from tests.unit.edge.test_pipeline import KERB as KERB_POLYGON
from tests.unit.edge.test_pipeline import run, vtest

T0 = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
SITE = SiteConfig(id="s1")
POLYGON = [[0, 0], [100, 0], [100, 100]]
BAY = ZoneConfig(id="bay", kind=ZoneKind.NO_PARKING, polygon=POLYGON)
KERB = ZoneConfig(id="kerb", kind=ZoneKind.NO_PARKING, polygon=POLYGON)
CAMERA = CameraConfig(id="cam", source="x.avi", zones=[BAY, KERB])
PRIVATE, PUBLIC = generate_key_pair()
KEY = private_key_from_text(PRIVATE)
PLATE = "沪A12345"


def frame() -> EvidenceFrame:
    return make_frame(1)


def rule_store(tmp_path: Path, *rules: Any, version: int = 1) -> RuleStore:
    store = RuleStore(tmp_path / "rules.json", public_key_from_text(PUBLIC), SITE, "g1")
    document = RuleDocument(
        site_id="s1", gateway_id="g1", version=version, issued_at=T0, rules=list(rules)
    )
    assert store.offer(sign_document(document, KEY))
    return store


def event(
    phase: Phase,
    violation: uuid.UUID,
    minutes: float,
    zone: str = "bay",
    plate: str | None = PLATE,
    confidence: float = 0.95,
    frames: bool = True,
) -> RuleEvent:
    return RuleEvent(
        phase=phase,
        violation_id=violation,
        zone_id=zone,
        started_at=T0,
        observed_at=T0 + timedelta(minutes=minutes),
        dwell_seconds=minutes * 60,
        object=ObservedObject(
            class_name="car", confidence=0.9, box=BoundingBox(x1=1, y1=1, x2=20, y2=20)
        ),
        evidence=[frame()] if frames else [],
        plate=PlateReading(text=plate, confidence=confidence) if plate is not None else None,
    )


def family_bay(**extra: Any) -> FamilyBayRule:
    fields: dict[str, Any] = {
        "id": "bay-rule",
        "site_id": "s1",
        "zone_id": "bay",
        "valid_from": T0 - timedelta(days=1),
        "reason": "孝心车位",
        "issued_at": T0,
        "max_minutes": 30,
        "max_visits_per_day": 2,
        "family_max_minutes": 120,
    }
    return FamilyBayRule(**(fields | extra))


def test_family_bay_stay_is_held_then_opens_once_it_runs_over(tmp_path: Path) -> None:
    store = rule_store(tmp_path, family_bay())
    gate = ExemptionGate(CAMERA, store)
    violation = uuid.uuid4()
    assert gate.admit(event(Phase.OPENED, violation, 5)) is None
    assert store.exempted == 1
    assert gate.admit(event(Phase.UPDATED, violation, 20)) is None
    # Over 30 minutes: an update without frames cannot open; the next with frames does.
    assert gate.admit(event(Phase.UPDATED, violation, 31, frames=False)) is None
    opened = gate.admit(event(Phase.UPDATED, violation, 40))
    assert opened is not None
    assert opened.phase is Phase.OPENED
    cleared = event(Phase.CLEARED, violation, 50)
    assert gate.admit(cleared) is cleared  # it was published: its clear goes too


def test_exempt_stay_never_leaves_even_its_clear(tmp_path: Path) -> None:
    permit = PermitRule(
        id="p",
        site_id="s1",
        plate=PLATE,
        valid_from=T0,
        valid_to=T0 + timedelta(days=1),
        reason="move",
        issued_at=T0,
    )
    store = rule_store(tmp_path, permit)
    gate = ExemptionGate(CAMERA, store)
    violation = uuid.uuid4()
    assert gate.admit(event(Phase.OPENED, violation, 5, zone="kerb")) is None
    assert gate.admit(event(Phase.UPDATED, violation, 60, zone="kerb")) is None
    assert gate.admit(event(Phase.CLEARED, violation, 70, zone="kerb")) is None
    assert store.exempted == 1
    # Another plate in the same place is enforced.
    other = event(Phase.OPENED, uuid.uuid4(), 5, zone="kerb", plate="京B54321")
    assert gate.admit(other) is other


def test_a_revoked_permit_opens_the_held_violation(tmp_path: Path) -> None:
    permit = PermitRule(
        id="p",
        site_id="s1",
        plate=PLATE,
        valid_from=T0,
        valid_to=T0 + timedelta(days=1),
        reason="move",
        issued_at=T0,
    )
    store = rule_store(tmp_path, permit)
    gate = ExemptionGate(CAMERA, store)
    violation = uuid.uuid4()
    assert gate.admit(event(Phase.OPENED, violation, 5, zone="kerb")) is None
    revoked = RuleDocument(site_id="s1", gateway_id="g1", version=2, issued_at=T0, rules=[])
    assert store.offer(sign_document(revoked, KEY))
    opened = gate.admit(event(Phase.UPDATED, violation, 10, zone="kerb"))
    assert opened is not None
    assert opened.phase is Phase.OPENED


def test_unreadable_plate_in_a_family_bay_is_warned_not_enforced(tmp_path: Path) -> None:
    store = rule_store(tmp_path, family_bay())
    gate = ExemptionGate(CAMERA, store)
    assert gate.admit(event(Phase.OPENED, uuid.uuid4(), 90, plate=None)) is None
    assert gate.admit(event(Phase.OPENED, uuid.uuid4(), 90, confidence=0.2)) is None
    assert store.warned == 2
    assert store.exempted == 0


def test_third_visit_of_the_day_is_enforced(tmp_path: Path) -> None:
    store = rule_store(tmp_path, family_bay())
    gate = ExemptionGate(CAMERA, store)
    for hour in (0, 1, 2):
        outcome = gate.admit(_shift(event(Phase.OPENED, uuid.uuid4(), 5), hour))
        assert (outcome is None) == (hour < 2)


def _shift(rule_event: RuleEvent, hours: int) -> RuleEvent:
    delta = timedelta(hours=hours)
    return replace(
        rule_event,
        started_at=rule_event.started_at + delta,
        observed_at=rule_event.observed_at + delta,
    )


def test_without_a_document_everything_passes(tmp_path: Path) -> None:
    store = RuleStore(tmp_path / "rules.json", public_key_from_text(PUBLIC), SITE, "g1")
    gate = ExemptionGate(CAMERA, store)
    opened = event(Phase.OPENED, uuid.uuid4(), 5)
    assert gate.admit(opened) is opened


def test_loading_window_keeps_the_parked_van_of_vtest_in_the_gateway(
    tmp_path: Path, shared_data: Path, model_path: Path
) -> None:
    """Real frames, real detector: the van at the kerb opens a violation, unless a loading window
    (any car, no plate needed) covers the kerb; then nothing reaches the outbox."""
    kerb = ZoneConfig(id="kerb", kind=ZoneKind.NO_PARKING, polygon=KERB_POLYGON, dwell_seconds=2)
    camera = CameraConfig(id="cam-road", source="vtest.avi", zones=[kerb])
    detector = create_detector(DetectorSettings(model=str(model_path)))
    window = TimeWindowRule(
        id="loading",
        site_id="s1",
        zone_id="kerb",
        valid_from=datetime(2020, 1, 1, tzinfo=UTC),
        reason="loading",
        issued_at=T0,
        start="00:00",
        end="23:59",
        weekdays=[1, 2, 3, 4, 5, 6, 7],
    )
    counts: dict[str, tuple[int, int, int]] = {}
    for name, rules in (("none", ()), ("window", (window,))):
        folder = tmp_path / name
        store = rule_store(folder, *rules)
        outbox = Outbox(folder / "outbox.sqlite")
        services = GatewayServices(
            model_info=detector.model_info, outbox=outbox, sealer=EvidenceSealer(None), rules=store
        )
        pipeline = CameraPipeline(
            "s1", "g1", camera, EdgeSettings(data_dir=folder), services, fps=10
        )
        events = run(pipeline, vtest(shared_data, 6), detector)
        counts[name] = (
            len([e for e in events if e.phase is Phase.OPENED]),
            outbox.pending_count(),
            store.exempted,
        )
    assert counts["none"][0] >= 1
    assert counts["none"][1] >= 1
    assert counts["window"] == (0, 0, counts["none"][0])
