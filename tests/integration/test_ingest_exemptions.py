"""Ingest checks stored violations against the exemption rules (SQLite and PostgreSQL): one that
should have been exempt is counted and flagged on its case's audit chain, not silently accepted;
one no rule covers, or whose permit was revoked, is not."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from contracts.acks import AckOutcome
from contracts.events import PlateReading, ViolationEvent
from contracts.exemptions import PermitRule
from contracts.rule_signing import generate_key_pair, private_key_from_text
from contracts.status import GatewayState, GatewayStatus
from dispatch.exemptions import ExemptionService
from ingest.exemption_check import FLAG_ACTION
from storage.audit import verify_chain
from storage.tables import Case, CaseTransition, GatewayStatusRow
from tests.factories import (
    GATEWAY,
    PARKING_ZONE,
    SITE,
    T0,
    EventFactory,
    IngestRig,
    make_ingest,
    migrated_database,
)

PLATE = "沪A12345"


@pytest.fixture
def rig(database_url: str, tmp_path: Path) -> Iterator[tuple[IngestRig, ExemptionService]]:
    with migrated_database(database_url) as (_engine, sessions):
        ingest = make_ingest(sessions, tmp_path / "evidence")
        private, _ = generate_key_pair()
        service = ExemptionService(sessions, ingest.registry, private_key_from_text(private))
        yield ingest, service


def with_plate(event: ViolationEvent, plate: str, confidence: float = 0.95) -> ViolationEvent:
    return event.model_copy(update={"plate": PlateReading(text=plate, confidence=confidence)})


def permit(rule_id: str = "permit-1", plate: str = PLATE) -> PermitRule:
    return PermitRule(
        id=rule_id,
        site_id=SITE,
        zone_id=PARKING_ZONE,
        plate=plate,
        valid_from=T0 - timedelta(hours=1),
        valid_to=T0 + timedelta(hours=1),
        reason="moving day",
        issued_at=T0,
    )


def flags(ingest: IngestRig) -> list[CaseTransition]:
    with ingest.session_factory() as session:
        return list(
            session.scalars(select(CaseTransition).where(CaseTransition.action == FLAG_ACTION))
        )


def counted(ingest: IngestRig, why: str) -> float:
    value = ingest.metrics.registry.get_sample_value(
        "civicwatch_ingest_should_have_been_exempt_total", {"why": why}
    )
    return value or 0.0


def test_an_event_that_should_have_been_exempt_is_stored_counted_and_flagged(
    rig: tuple[IngestRig, ExemptionService],
) -> None:
    ingest, service = rig
    service.issue_rule(permit(), "pm-chief")
    factory = EventFactory()
    covered = with_plate(factory.event(), PLATE)
    other = with_plate(factory.event(), "京B54321")
    weak = with_plate(factory.event(), PLATE, confidence=0.3)
    acks = ingest.handler.handle_batch(
        [(factory.topic, e.to_wire()) for e in (covered, other, weak)]
    )
    assert all(ack is not None and ack.outcome is AckOutcome.STORED for ack in acks)
    entries = flags(ingest)
    assert len(entries) == 1
    assert entries[0].detail["rule_id"] == "permit-1"
    assert entries[0].detail["why"] == "permit"
    with ingest.session_factory() as session:
        case = session.scalars(select(Case).where(Case.violation_id == covered.violation_id)).one()
        assert entries[0].case_id == case.id
        assert verify_chain(session).intact
    assert counted(ingest, "permit") == 1


def test_a_revoked_permit_flags_nothing(rig: tuple[IngestRig, ExemptionService]) -> None:
    ingest, service = rig
    service.issue_rule(permit(), "pm-chief")
    service.revoke("permit-1", "pm-chief", "left early")
    factory = EventFactory()
    ingest.handler.handle(factory.topic, with_plate(factory.event(), PLATE).to_wire())
    assert flags(ingest) == []
    assert counted(ingest, "permit") == 0


def test_the_rules_version_a_gateway_reports_is_kept_through_its_last_will(
    rig: tuple[IngestRig, ExemptionService],
) -> None:
    ingest, _ = rig
    online = GatewayStatus(
        site_id=SITE, gateway_id=GATEWAY, state=GatewayState.ONLINE, at=T0, rules_version=7
    )
    ingest.service.record_gateway_status(online)
    will = GatewayStatus(site_id=SITE, gateway_id=GATEWAY, state=GatewayState.OFFLINE)
    ingest.service.record_gateway_status(will)
    with ingest.session_factory() as session:
        row = session.get(GatewayStatusRow, GATEWAY)
        assert row is not None
        assert (row.state, row.rules_version) == ("offline", 7)
