"""The SLA sweep on a real database with a fixed clock: deadlines on the working calendar,
breaches, escalation to the supervisor and the head, community cases handed on, idempotence.

Cases come from real events through real ingest; the router's clock start (when ingest received
the event) is pinned to the test's fixed time, since ingest stamps the wall clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from contracts.events import ViolationKind
from dispatch.calendar import CalendarSettings, WorkingCalendar
from dispatch.config import (
    DeadlineClock,
    Department,
    HoursOfDay,
    Priority,
    Role,
    RoutingRule,
    RoutingSettings,
    SlaSettings,
    Tier,
)
from dispatch.metrics import DispatchMetrics
from dispatch.routing import Router
from dispatch.sla import SWEEP_ACTOR, SlaSweep, SweepReport
from dispatch.workflow import Action, Actor, Command, Workflow
from storage.audit import verify_chain
from storage.database import SessionFactory
from storage.routing import OpenedCase, RouteDecision
from storage.tables import Case, CaseTransition
from tests.factories import FIRE_LANE_ZONE, PARKING_ZONE, SITE, EventFactory, make_ingest

SHANGHAI = ZoneInfo("Asia/Shanghai")
FRIDAY = date(2026, 11, 27)
SATURDAY = date(2026, 11, 28)
MONDAY = date(2026, 11, 30)
TUESDAY = date(2026, 12, 1)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI)


PARKING_WORKING_TIME = RoutingRule(
    kind=ViolationKind.ILLEGAL_PARKING,
    department=Department.LAW_ENFORCEMENT,
    ack_minutes=30,
    sla_minutes=120,
    clock=DeadlineClock.WORKING,
)
NIGHT_COMMUNITY = RoutingRule(
    kind=ViolationKind.ILLEGAL_PARKING,
    site_id=SITE,
    hours=HoursOfDay.model_validate({"start": "22:00", "end": "07:00"}),
    department=Department.PROPERTY_MANAGEMENT,
    tier=Tier.COMMUNITY,
    escalate_to=Department.LAW_ENFORCEMENT,
    priority=Priority.LOW,
    ack_minutes=60,
    sla_minutes=120,
    clock=DeadlineClock.WORKING,
)
LAW_ENFORCEMENT_WORKER = Actor("officer-1", Role.WORKER, Department.LAW_ENFORCEMENT)


@dataclass
class Rig:
    sessions: SessionFactory
    router: Router
    settings: SlaSettings
    metrics: DispatchMetrics
    events: EventFactory
    service: Any

    def sweep(self, now: datetime) -> SweepReport:
        """A fresh sweep each time, as after a restart: nothing is kept between runs."""
        sweep = SlaSweep(
            self.sessions,
            Workflow(reroute=self.router.assignment),
            self.router.calendar,
            self.settings,
            self.metrics,
            self.router,
        )
        return sweep.run(now)

    def open_case(self, seen: datetime, kind: ViolationKind = ViolationKind.ILLEGAL_PARKING) -> int:
        zone = FIRE_LANE_ZONE if kind is ViolationKind.FIRE_LANE_BLOCKING else PARKING_ZONE
        event = self.events.event(at=seen, kind=kind, zone_id=zone)
        self.service.store(event)
        with self.sessions() as session:
            return int(session.scalars(select(Case.id).order_by(Case.id.desc()).limit(1)).one())

    def act(self, case_id: int, command: Command, actor: Actor, now: datetime) -> None:
        with self.sessions.begin() as session:
            case = session.get_one(Case, case_id)
            Workflow().apply(session, case, command, actor, now)

    def case(self, case_id: int) -> Case:
        with self.sessions() as session:
            return session.get_one(Case, case_id)

    def entries(self, case_id: int, action: Action) -> list[CaseTransition]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(CaseTransition)
                    .where(CaseTransition.case_id == case_id, CaseTransition.action == action)
                    .order_by(CaseTransition.seq)
                )
            )

    def snapshot(self) -> tuple[Any, ...]:
        """Everything a sweep may change: every case's SLA columns and the audit log's size."""
        with self.sessions() as session:
            cases = session.execute(
                select(
                    Case.id,
                    Case.state,
                    Case.department,
                    Case.tier,
                    Case.overdue,
                    Case.escalation_level,
                    Case.escalated_at,
                    Case.ack_due_at,
                    Case.sla_due_at,
                    Case.escalate_to,
                ).order_by(Case.id)
            ).all()
            entries = session.scalar(select(func.count()).select_from(CaseTransition))
        return tuple(cases), entries

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


def make_rig(
    sessions: SessionFactory,
    tmp_path: Path,
    rules: list[RoutingRule],
    received: datetime,
    calendar: CalendarSettings | None = None,
    **sla: Any,
) -> Rig:
    router = Router(RoutingSettings(rules=rules), WorkingCalendar(calendar or CalendarSettings()))

    def route_received_now(cases: Sequence[OpenedCase]) -> list[RouteDecision]:
        # Ingest stamps received_at with the wall clock; the SLA clock must start at the test's.
        pinned = [replace(case, received_at=received) for case in cases]
        return router.dispatch_new_cases(pinned)

    ingest = make_ingest(sessions, tmp_path / "evidence", route_cases=route_received_now)
    settings = SlaSettings(calendar=calendar or CalendarSettings(), **sla)
    return Rig(
        sessions,
        router,
        settings,
        DispatchMetrics(CollectorRegistry()),
        EventFactory(),
        ingest.service,
    )


@pytest.mark.parametrize(
    ("holidays", "due"),
    [
        ([], local(MONDAY, 10, 30)),
        ([MONDAY], local(TUESDAY, 10, 30)),
    ],
    ids=["weekend", "weekend-and-holiday-monday"],
)
def test_friday_evening_case_is_due_after_the_weekend_and_escalates_on_time(
    session_factory: SessionFactory, tmp_path: Path, holidays: list[date], due: datetime
) -> None:
    """Opened Friday 17:30 with 120 working minutes: 30 on Friday (to 18:00), 90 on the next
    working morning from 09:00."""
    friday = local(FRIDAY, 17, 30)
    rig = make_rig(
        session_factory,
        tmp_path,
        [PARKING_WORKING_TIME],
        friday,
        CalendarSettings(holidays=holidays),
    )
    case_id = rig.open_case(friday)
    case = rig.case(case_id)
    assert case.sla_due_at == due
    assert case.ack_due_at == local(FRIDAY, 18)
    rig.act(case_id, Command(Action.ACCEPT), LAW_ENFORCEMENT_WORKER, local(FRIDAY, 17, 45))

    # Saturday, Sunday and the minute before the deadline: nothing is overdue.
    for moment in (local(SATURDAY, 10), local(SATURDAY, 23), due - timedelta(minutes=1)):
        assert rig.sweep(moment) == SweepReport()
    assert rig.case(case_id).overdue is False
    assert rig.entries(case_id, Action.ESCALATE) == []

    # At the deadline: overdue, one breach, escalated to the supervisor.
    report = rig.sweep(due)
    assert (report.breaches, report.escalations) == (1, 1)
    case = rig.case(case_id)
    assert (case.overdue, case.escalation_level, case.escalated_at) == (True, 1, due)
    (supervisor,) = rig.entries(case_id, Action.ESCALATE)
    assert supervisor.actor == SWEEP_ACTOR
    assert supervisor.detail == {
        "level": 1,
        "deadline": "resolve",
        "to": "supervisor",
        "department": "law_enforcement",
        "due_at": due.astimezone(UTC).isoformat(timespec="seconds"),
    }
    assert supervisor.reason == (
        f"resolve deadline {due.isoformat(timespec='minutes')} missed: "
        "to the supervisor of law_enforcement"
    )
    assert (supervisor.from_state, supervisor.to_state) == ("accepted", "accepted")
    assert (
        rig.sample(
            "civicwatch_sla_breaches_total",
            kind="illegal_parking",
            department="law_enforcement",
            deadline="resolve",
        )
        == 1
    )

    # Again at the same moment, and an hour of working time less a minute later: no change.
    before = rig.snapshot()
    assert rig.sweep(due) == SweepReport()
    head_at = due + timedelta(hours=1)  # 10:30 + 60 working minutes, before lunch
    assert rig.sweep(head_at - timedelta(minutes=1)) == SweepReport()
    assert rig.snapshot() == before

    # head_after_minutes (60) after the supervisor: to the department head, once.
    assert rig.sweep(head_at).escalations == 1
    assert rig.sweep(head_at).escalations == 0
    levels = [
        (e.detail["level"], e.detail["to"], e.at) for e in rig.entries(case_id, Action.ESCALATE)
    ]
    assert levels == [(1, "supervisor", due), (2, "head", head_at)]
    assert (
        rig.sample(
            "civicwatch_escalations_total",
            kind="illegal_parking",
            department="law_enforcement",
            deadline="resolve",
            to="head",
        )
        == 1
    )
    assert (
        rig.sample(
            "civicwatch_sla_breaches_total",
            kind="illegal_parking",
            department="law_enforcement",
            deadline="resolve",
        )
        == 1
    )  # still one breach: the same overdue case
    with session_factory() as session:
        assert verify_chain(session).intact


def test_head_escalation_counts_working_time_across_lunch_and_the_night(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    start = local(MONDAY, 9, 0)
    rig = make_rig(session_factory, tmp_path, [PARKING_WORKING_TIME], start)
    case_id = rig.open_case(start)
    rig.act(case_id, Command(Action.ACCEPT), LAW_ENFORCEMENT_WORKER, start)
    due = local(MONDAY, 11, 0)
    assert rig.case(case_id).sla_due_at == due
    assert rig.sweep(due).escalations == 1
    # 60 working minutes after 11:00: 60 before lunch ends at 12:00 exactly.
    assert rig.sweep(local(MONDAY, 11, 59)).escalations == 0
    assert rig.sweep(local(MONDAY, 12, 0)).escalations == 1


def test_head_escalation_on_a_late_deadline_waits_for_the_next_working_morning(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    start = local(FRIDAY, 15, 30)
    rig = make_rig(session_factory, tmp_path, [PARKING_WORKING_TIME], start)
    case_id = rig.open_case(start)
    rig.act(case_id, Command(Action.ACCEPT), LAW_ENFORCEMENT_WORKER, start)
    assert rig.case(case_id).sla_due_at == local(FRIDAY, 17, 30)
    assert rig.sweep(local(FRIDAY, 17, 30)).escalations == 1
    for moment in (local(FRIDAY, 18, 30), local(SATURDAY, 12), local(MONDAY, 9, 29)):
        assert rig.sweep(moment).escalations == 0
    assert rig.sweep(local(MONDAY, 9, 30)).escalations == 1  # 30 on Friday + 30 on Monday


def test_fire_lanes_run_on_the_calendar_clock_through_the_weekend(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    """The default fire-lane route: ack in 5, resolve in 30 minutes, 24/7."""
    night = local(SATURDAY, 3, 0)
    rig = make_rig(session_factory, tmp_path, [PARKING_WORKING_TIME], night)
    case_id = rig.open_case(night, ViolationKind.FIRE_LANE_BLOCKING)
    case = rig.case(case_id)
    assert (case.ack_due_at, case.sla_due_at) == (
        night + timedelta(minutes=5),
        night + timedelta(minutes=30),
    )
    assert rig.sweep(night + timedelta(minutes=4)) == SweepReport()
    report = rig.sweep(night + timedelta(minutes=5))  # not acknowledged in time
    assert (report.breaches, report.escalations) == (1, 1)
    (entry,) = rig.entries(case_id, Action.ESCALATE)
    assert (entry.detail["deadline"], entry.detail["to"]) == ("ack", "supervisor")
    assert rig.sweep(night + timedelta(minutes=65)).escalations == 1  # the head, at 04:05
    assert (
        rig.sample(
            "civicwatch_sla_breaches_total",
            kind="fire_lane_blocking",
            department="fire_rescue",
            deadline="ack",
        )
        == 1
    )


def test_accepting_ends_an_ack_breach_and_the_resolve_deadline_escalates_afresh(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    start = local(SATURDAY, 3, 0)
    rig = make_rig(session_factory, tmp_path, [], start)
    case_id = rig.open_case(start, ViolationKind.FIRE_LANE_BLOCKING)
    assert rig.sweep(start + timedelta(minutes=6)).breaches == 1  # ack missed
    fire_worker = Actor("firefighter", Role.WORKER, Department.FIRE_RESCUE)
    rig.act(case_id, Command(Action.ACCEPT), fire_worker, start + timedelta(minutes=10))
    report = rig.sweep(start + timedelta(minutes=11))
    assert report.recovered == 1
    case = rig.case(case_id)
    assert (case.overdue, case.escalation_level) == (False, 0)
    report = rig.sweep(start + timedelta(minutes=30))
    assert (report.breaches, report.escalations) == (1, 1)
    levels = [
        (e.detail["deadline"], e.detail["level"]) for e in rig.entries(case_id, Action.ESCALATE)
    ]
    assert levels == [("ack", 1), ("resolve", 1)]
    for deadline in ("ack", "resolve"):
        assert (
            rig.sample(
                "civicwatch_sla_breaches_total",
                kind="fire_lane_blocking",
                department="fire_rescue",
                deadline=deadline,
            )
            == 1
        )


def test_a_sweep_after_downtime_catches_up_both_levels_in_order(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    start = local(SATURDAY, 3, 0)
    rig = make_rig(session_factory, tmp_path, [], start)
    case_id = rig.open_case(start, ViolationKind.FIRE_LANE_BLOCKING)
    late = start + timedelta(hours=5)
    report = rig.sweep(late)
    assert (report.breaches, report.escalations) == (1, 2)
    entries = rig.entries(case_id, Action.ESCALATE)
    assert [(e.detail["level"], e.detail["to"], e.at) for e in entries] == [
        (1, "supervisor", late),
        (2, "head", late),
    ]
    assert rig.case(case_id).escalation_level == 2
    assert rig.sweep(late + timedelta(days=3)) == SweepReport()  # nothing above the head


def test_community_case_past_its_sla_goes_to_its_department_with_new_deadlines(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    """Parked at night in the compound: property management first, on working time; when its
    SLA runs out the sweep transfers it to law enforcement, whose route sets new deadlines."""
    night = local(FRIDAY, 23, 0)
    rig = make_rig(session_factory, tmp_path, [NIGHT_COMMUNITY, PARKING_WORKING_TIME], night)
    case_id = rig.open_case(night)
    case = rig.case(case_id)
    assert (case.department, case.tier, case.escalate_to) == (
        "property_management",
        "community",
        "law_enforcement",
    )
    assert (case.ack_due_at, case.sla_due_at) == (local(MONDAY, 10), local(MONDAY, 11))
    property_worker = Actor("concierge", Role.WORKER, Department.PROPERTY_MANAGEMENT)
    rig.act(case_id, Command(Action.ACCEPT), property_worker, local(MONDAY, 9, 5))
    assert rig.sweep(local(MONDAY, 10, 59)) == SweepReport()

    moment = local(MONDAY, 11, 0)
    report = rig.sweep(moment)
    assert (report.breaches, report.transfers, report.escalations) == (1, 1, 0)
    case = rig.case(case_id)
    assert (case.state, case.department, case.tier, case.priority, case.escalate_to) == (
        "dispatched",
        "law_enforcement",
        "department",
        "normal",
        None,
    )
    # Law enforcement's rule: ack 30, resolve 120 working minutes from the transfer.
    assert case.ack_due_at == local(MONDAY, 11, 30)
    assert case.sla_due_at == local(MONDAY, 14, 30)  # 60 to noon, lunch, 60 from 13:30
    assert (case.overdue, case.escalation_level, case.acknowledged_at) == (False, 0, None)
    (transfer,) = rig.entries(case_id, Action.TRANSFER)
    assert transfer.actor == SWEEP_ACTOR
    assert transfer.detail["from_department"] == "property_management"
    assert transfer.detail["department"] == "law_enforcement"
    assert datetime.fromisoformat(transfer.detail["sla_due_at"]) == local(MONDAY, 14, 30)
    assert transfer.reason.startswith("property_management did not resolve it by 2026-11-30T11:00")
    assert (
        rig.sample(
            "civicwatch_sla_transfers_total",
            kind="illegal_parking",
            from_department="property_management",
            to_department="law_enforcement",
        )
        == 1
    )
    assert (
        rig.sample(
            "civicwatch_sla_breaches_total",
            kind="illegal_parking",
            department="property_management",
            deadline="resolve",
        )
        == 1
    )

    before = rig.snapshot()
    assert rig.sweep(moment) == SweepReport()
    assert rig.snapshot() == before
    # Law enforcement does not accept in time either: now it escalates, no further transfer.
    report = rig.sweep(local(MONDAY, 11, 30))
    assert (report.breaches, report.escalations, report.transfers) == (1, 1, 0)
    with session_factory() as session:
        assert verify_chain(session).intact


def test_closed_resolved_and_parked_cases_are_left_alone(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    start = local(MONDAY, 9, 0)
    rig = make_rig(session_factory, tmp_path, [PARKING_WORKING_TIME], start)
    resolved, parked, open_case = (rig.open_case(start) for _ in range(3))
    rig.act(resolved, Command(Action.ACCEPT), LAW_ENFORCEMENT_WORKER, start)
    rig.act(resolved, Command(Action.RESOLVE), LAW_ENFORCEMENT_WORKER, start)
    dispatcher = Actor("desk", Role.DISPATCHER)
    rig.act(parked, Command(Action.PARK, reason="waiting for the owner"), dispatcher, start)
    report = rig.sweep(local(TUESDAY, 9, 0))
    assert (report.breaches, report.escalations) == (1, 2)
    assert [rig.case(i).overdue for i in (resolved, parked, open_case)] == [False, False, True]


def test_batches_cover_every_due_case(session_factory: SessionFactory, tmp_path: Path) -> None:
    start = local(SATURDAY, 3, 0)
    rig = make_rig(session_factory, tmp_path, [], start, batch_size=2)
    ids = [rig.open_case(start, ViolationKind.FIRE_LANE_BLOCKING) for _ in range(5)]
    report = rig.sweep(start + timedelta(minutes=10))
    assert (report.breaches, report.escalations) == (5, 5)
    assert all(rig.case(i).escalation_level == 1 for i in ids)
    assert rig.sweep(start + timedelta(minutes=10)) == SweepReport()


def test_supervisor_after_minutes_delays_the_first_escalation_not_the_breach(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    start = local(SATURDAY, 3, 0)
    rig = make_rig(
        session_factory, tmp_path, [], start, supervisor_after_minutes=15, head_after_minutes=30
    )
    case_id = rig.open_case(start, ViolationKind.FIRE_LANE_BLOCKING)
    ack_due = start + timedelta(minutes=5)
    report = rig.sweep(ack_due)
    assert (report.breaches, report.escalations) == (1, 0)
    assert rig.case(case_id).overdue
    assert rig.sweep(ack_due + timedelta(minutes=14)).escalations == 0
    assert rig.sweep(ack_due + timedelta(minutes=15)).escalations == 1
    assert rig.sweep(ack_due + timedelta(minutes=44)).escalations == 0
    assert rig.sweep(ack_due + timedelta(minutes=45)).escalations == 1


def test_the_server_schedules_one_sweep_job_with_its_metrics_on_the_server_registry(
    tmp_path: Path,
) -> None:
    from civicwatch.config import CivicwatchConfig, ServerSettings
    from civicwatch.server import build_server
    from ingest.config import IngestSettings
    from storage.tables import utcnow
    from tests.factories import make_registry, start_from_migrated_template

    config = CivicwatchConfig(
        sites=make_registry().sites,
        server=ServerSettings(
            database_url=f"sqlite:///{tmp_path / 'civicwatch.db'}",
            ingest=IngestSettings(evidence_dir=tmp_path / "evidence"),
            sla=SlaSettings(sweep_seconds=7),
        ),
    )
    start_from_migrated_template(config.server.database_url)
    server = build_server(config)
    try:
        job = server.scheduler.get_job("sla-sweep")
        assert job is not None
        assert job.trigger.interval == timedelta(seconds=7)
        assert server.sla_sweep is not None
        server.service.store(
            EventFactory().event(kind=ViolationKind.FIRE_LANE_BLOCKING, zone_id=FIRE_LANE_ZONE)
        )
        report = server.sla_sweep.run(utcnow() + timedelta(minutes=31))
        assert (report.breaches, report.escalations) == (1, 1)
        labels = {"kind": "fire_lane_blocking", "department": "fire_rescue", "deadline": "ack"}
        registry = server.metrics.registry
        assert registry.get_sample_value("civicwatch_sla_breaches_total", labels) == 1
        assert (
            registry.get_sample_value(
                "civicwatch_escalations_total", {**labels, "to": "supervisor"}
            )
            == 1
        )
    finally:
        server.stop()
