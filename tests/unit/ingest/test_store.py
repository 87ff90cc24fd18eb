"""Idempotent storage and one case per violation, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from contracts.acks import AckOutcome
from contracts.events import Phase, ViolationKind
from storage.database import SessionFactory, make_engine, make_session_factory
from storage.routing import OpenedCase, RouteDecision
from storage.tables import Case, CaseEvidence, CaseState, CaseTransition, Event, Evidence
from tests.factories import FIRE_LANE_ZONE, T0, EventFactory, make_ingest


def _count(sessions: SessionFactory, table: type[object]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


def test_same_message_twice_is_one_event_one_case(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_ingest(session_factory, tmp_path / "evidence")
    event = EventFactory().event()
    assert rig.service.store(event) is AckOutcome.STORED
    assert rig.service.store(event) is AckOutcome.DUPLICATE
    assert _count(session_factory, Event) == 1
    assert _count(session_factory, Case) == 1
    assert _count(session_factory, CaseEvidence) == 2
    assert _count(session_factory, CaseTransition) == 2  # new, dispatched: not repeated
    assert rig.metrics.registry.get_sample_value("civicwatch_ingest_duplicates_total") == 1
    assert rig.metrics.registry.get_sample_value("civicwatch_ingest_cases_opened_total") == 1


def test_phases_of_one_violation_make_one_case_with_all_evidence(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_ingest(session_factory, tmp_path / "evidence")
    edge = EventFactory()
    violation = uuid4()
    opened = edge.event(Phase.OPENED, violation, frames=2, at=T0)
    updated = edge.event(Phase.UPDATED, violation, frames=1, at=T0 + timedelta(minutes=5))
    cleared = edge.event(Phase.CLEARED, violation, frames=1, at=T0 + timedelta(minutes=9))
    for event in (opened, updated, cleared):
        assert rig.service.store(event) is AckOutcome.STORED

    with session_factory() as session:
        case = session.scalars(select(Case)).one()
        assert case.violation_id == violation
        assert case.opened_at == T0
        assert case.last_observed_at == cleared.observed_at
        assert case.cleared_at == cleared.observed_at
        assert case.last_observed_at.tzinfo is not None
        stored = {item.sha256 for item in case.evidence}
    frames = [frame for event in (opened, updated, cleared) for frame in event.evidence]
    assert stored == {frame.sha256 for frame in frames}
    for frame in frames:  # each file is on disk under its own hash
        data = rig.evidence_store.read(frame.sha256)
        assert hashlib.sha256(data).hexdigest() == frame.sha256
    assert _count(session_factory, Evidence) == 4
    assert _count(session_factory, Event) == 3


def test_updated_before_opened_still_makes_one_routed_case(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_ingest(session_factory, tmp_path / "evidence")
    edge = EventFactory()
    violation = uuid4()
    opened = edge.event(Phase.OPENED, violation, at=T0)
    updated = edge.event(Phase.UPDATED, violation, at=T0 + timedelta(minutes=3))
    rig.service.store(updated)  # the outbox replayed out of order
    rig.service.store(opened)
    with session_factory() as session:
        case = session.scalars(select(Case)).one()
        assert case.opened_at == T0
        assert case.last_observed_at == updated.observed_at
        assert case.state == CaseState.DISPATCHED
        assert [t.to_state for t in case.transitions] == ["new", "dispatched"]
        assert len(case.evidence) == 4


def test_new_case_is_routed_in_the_same_transaction(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_ingest(session_factory, tmp_path / "evidence")
    rig.service.store(
        EventFactory().event(zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING)
    )
    with session_factory() as session:
        case = session.scalars(select(Case)).one()
        assert (case.department, case.priority, case.state) == (
            "fire_rescue",
            "urgent",
            "dispatched",
        )
        assert case.sla_due_at == case.created_at + timedelta(minutes=30)
        transitions = [(t.from_state, t.to_state, t.actor) for t in case.transitions]
        assert transitions == [(None, "new", "ingest"), ("new", "dispatched", "dispatch")]
        assert case.transitions[1].reason == (
            "default route for fire_lane_blocking: fire_rescue, department, urgent, SLA 30 min"
        )


def test_a_router_that_skips_a_case_leaves_nothing_stored(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    def decide_nothing(_cases: Sequence[OpenedCase]) -> list[RouteDecision]:
        return []

    rig = make_ingest(session_factory, tmp_path / "evidence", route_cases=decide_nothing)
    with pytest.raises(RuntimeError, match="0 decision"):
        rig.service.store(EventFactory().event())
    assert _count(session_factory, Event) == 0
    assert _count(session_factory, Case) == 0


def test_a_failing_case_hook_leaves_nothing_stored(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    def refuse_to_route(_cases: Sequence[OpenedCase]) -> list[RouteDecision]:
        raise RuntimeError("routing exploded")

    rig = make_ingest(session_factory, tmp_path / "evidence", route_cases=refuse_to_route)
    with pytest.raises(RuntimeError, match="routing exploded"):
        rig.service.store(EventFactory().event())
    assert _count(session_factory, Event) == 0
    assert _count(session_factory, Case) == 0
    assert _count(session_factory, Evidence) == 0


def test_database_down_raises_so_nothing_is_confirmed(tmp_path: Path) -> None:
    engine = make_engine("postgresql+psycopg://root@127.0.0.1:1/nowhere?connect_timeout=2")
    rig = make_ingest(make_session_factory(engine), tmp_path / "evidence")
    with pytest.raises(OperationalError):
        rig.service.store(EventFactory().event())
    assert rig.metrics.registry.get_sample_value("civicwatch_ingest_events_stored_total") == 0


def test_sequence_gaps_are_counted_per_camera(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_ingest(session_factory, tmp_path / "evidence")
    edge = EventFactory()
    rig.service.store(edge.event())  # sequence 0
    edge.next_sequence = 4  # 1, 2 and 3 were lost
    rig.service.store(edge.event())
    rig.service.store(edge.event())  # 5: no gap
    edge.next_sequence = 2  # a late replay from below the highest: not a gap
    rig.service.store(edge.event())
    assert rig.metrics.registry.get_sample_value("civicwatch_ingest_sequence_gaps_total") == 3
