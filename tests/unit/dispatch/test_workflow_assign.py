"""Assignment to a person, deadlines recorded on a transfer, and refusal codes, on a real database
(SQLite and PostgreSQL) with cases from real events through real ingest."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.config import Department, Role, RoutingSettings
from dispatch.routing import Router
from dispatch.sla import clock_starts, deadline_status
from dispatch.web.i18n import load_catalogue
from dispatch.workflow import (
    Action,
    Actor,
    CloseReason,
    Command,
    IllegalTransitionError,
    MissingInputError,
    NotPermittedError,
    Person,
    Workflow,
    WorkflowError,
    assignable_people,
)
from storage.audit import verify_chain
from storage.database import SessionFactory
from storage.tables import Case, User, utcnow
from tests.factories import T0, EventFactory, make_ingest

LAW = Department.LAW_ENFORCEMENT
FIRE = Department.FIRE_RESCUE
DISPATCHER = Actor("desk", Role.DISPATCHER)
ADMIN = Actor("root", Role.ADMIN)
LAW_CHIEF = Actor("law-chief", Role.SUPERVISOR, LAW)
FIRE_CHIEF = Actor("fire-chief", Role.SUPERVISOR, FIRE)
LAW_WORKER = Actor("officer-1", Role.WORKER, LAW)
# (username, display name, role, department, active)
PEOPLE = [
    ("officer-1", "Wang Wei", Role.WORKER, LAW, True),
    ("officer-2", "Li Na", Role.WORKER, LAW, True),
    ("law-chief", "Zhao Lei", Role.SUPERVISOR, LAW, True),
    ("retired", "Old Hand", Role.WORKER, LAW, False),
    ("fire-1", "Chen Jie", Role.WORKER, FIRE, True),
    ("desk", "Desk", Role.DISPATCHER, None, True),
]


@pytest.fixture
def session(session_factory: SessionFactory, tmp_path: Path) -> Iterator[Session]:
    """Two cases dispatched to law enforcement by the default route, and the people above."""
    service = make_ingest(session_factory, tmp_path / "evidence").service
    events = EventFactory()
    service.store(events.event())
    service.store(events.event())
    with session_factory() as session:
        now = utcnow()
        for username, display, role, department, active in PEOPLE:
            session.add(
                User(
                    username=username,
                    display_name=display,
                    role=role.value,
                    department=department.value if department else None,
                    password_hash="not-a-login",
                    active=active,
                    created_at=now,
                    password_changed_at=now,
                )
            )
        session.commit()
        yield session


def _case(session: Session) -> Case:
    return session.scalars(select(Case).order_by(Case.id)).first()  # type: ignore[return-value]


def _assign(session: Session, case: Case, actor: Actor, assignee: str, workflow: Workflow) -> None:
    workflow.apply(session, case, Command(Action.ASSIGN, assignee=assignee), actor, T0)


def test_assignable_people_are_the_departments_active_workers_and_supervisors(
    session: Session,
) -> None:
    assert assignable_people(session, LAW) == [
        Person("officer-2", "Li Na", Role.WORKER),
        Person("officer-1", "Wang Wei", Role.WORKER),
        Person("law-chief", "Zhao Lei", Role.SUPERVISOR),
    ]
    assert [p.username for p in assignable_people(session, FIRE)] == ["fire-1"]
    assert assignable_people(session, Department.PUBLIC_SECURITY) == []


@pytest.mark.parametrize("actor", [DISPATCHER, ADMIN, LAW_CHIEF], ids=lambda a: a.role)
def test_assign_then_unassign_each_on_the_audit_chain(session: Session, actor: Actor) -> None:
    workflow = Workflow()
    case = _case(session)
    _assign(session, case, actor, "officer-1", workflow)
    assert case.assignee == "officer-1"
    _assign(session, case, actor, " officer-2 ", workflow)
    _assign(session, case, actor, "", workflow)
    session.commit()
    assert case.assignee is None
    entries = [(t.action, t.actor, t.detail) for t in case.transitions if t.action == "assign"]
    assert entries == [
        ("assign", actor.name, {"assignee": "officer-1", "from_assignee": None}),
        ("assign", actor.name, {"assignee": "officer-2", "from_assignee": "officer-1"}),
        ("assign", actor.name, {"assignee": None, "from_assignee": "officer-2"}),
    ]
    assert verify_chain(session).intact


def test_assign_keeps_the_state_and_works_once_accepted(session: Session) -> None:
    workflow = Workflow()
    case = _case(session)
    workflow.apply(session, case, Command(Action.ACCEPT), LAW_WORKER, T0)
    _assign(session, case, LAW_CHIEF, "officer-1", workflow)
    assert (case.state, case.assignee) == ("accepted", "officer-1")


@pytest.mark.parametrize(
    ("assignee", "why"),
    [
        ("fire-1", "another department's worker"),
        ("retired", "an inactive account"),
        ("desk", "a dispatcher"),
        ("nobody-at-all", "no such user"),
        ("x" * 500, "hostile length"),
    ],
)
def test_only_an_active_person_of_the_cases_department_may_be_assigned(
    session: Session, assignee: str, why: str
) -> None:
    case = _case(session)
    with pytest.raises(MissingInputError) as refused:
        _assign(session, case, DISPATCHER, assignee, Workflow())
    assert refused.value.code == "assignee_not_in_department", why
    assert refused.value.params == {"assignee": assignee[:64], "department": LAW.value}
    assert case.assignee is None
    assert not [t for t in case.transitions if t.action == "assign"]


def test_who_may_assign(session: Session) -> None:
    case = _case(session)
    with pytest.raises(NotPermittedError) as worker:
        _assign(session, case, LAW_WORKER, "officer-2", Workflow())
    assert (worker.value.code, worker.value.params) == (
        "role_not_permitted",
        {"action": "assign", "role": "worker"},
    )
    with pytest.raises(NotPermittedError) as other_chief:
        _assign(session, case, FIRE_CHIEF, "officer-2", Workflow())
    assert other_chief.value.code == "not_case_department"
    assert case.assignee is None


def test_unassigning_nobody_and_assigning_twice_are_refused(session: Session) -> None:
    case = _case(session)
    with pytest.raises(MissingInputError) as nobody:
        _assign(session, case, DISPATCHER, "", Workflow())
    assert (nobody.value.code, nobody.value.params) == ("not_assigned", {"case_id": case.id})
    _assign(session, case, DISPATCHER, "officer-1", Workflow())
    with pytest.raises(MissingInputError) as twice:
        _assign(session, case, DISPATCHER, "officer-1", Workflow())
    assert twice.value.code == "already_assigned"


def test_a_transfer_clears_the_assignee_and_records_the_deadlines_it_moves(
    session: Session,
) -> None:
    workflow = Workflow(reroute=Router(RoutingSettings()).assignment)
    case = _case(session)
    _assign(session, case, DISPATCHER, "officer-1", workflow)
    ack_before, due_before = case.ack_due_at, case.sla_due_at
    assert ack_before is not None
    assert due_before is not None
    moved_at = utcnow() + timedelta(hours=3)  # after ingest's own dispatch, on the wall clock
    workflow.apply(
        session,
        case,
        Command(Action.TRANSFER, reason="blocks the fire lane", department=FIRE),
        DISPATCHER,
        moved_at,
    )
    session.commit()
    assert case.assignee is None
    detail = case.transitions[-1].detail
    assert detail["assignee_cleared"] == "officer-1"
    assert detail["deadline_from"] == due_before.isoformat()
    assert detail["deadline_to"] == case.sla_due_at.isoformat()  # type: ignore[union-attr]
    assert detail["ack_deadline_from"] == ack_before.isoformat()
    assert detail["ack_deadline_to"] == case.ack_due_at.isoformat()  # type: ignore[union-attr]
    assert case.sla_due_at != due_before  # the new department's clock starts at the transfer
    # the deadline's "due soon" margin counts from the transfer, read in one query for a list
    assert clock_starts(session, [case.id]) == {case.id: moved_at}
    assert clock_starts(session, []) == {}
    status = deadline_status(case, moved_at + timedelta(minutes=1))
    assert status.accept is not None
    assert status.accept.state == "ok"


def test_close_reason_and_other_fields_only_with_their_action(session: Session) -> None:
    case = _case(session)
    cases: list[tuple[Command, str, dict[str, str]]] = [
        (
            Command(Action.NOTE, reason="x", close_reason=CloseReason.FALSE_ALARM),
            "close_reason_only_on_close",
            {"action": "note"},
        ),
        (
            Command(Action.NOTE, reason="x", assignee="officer-1"),
            "field_not_for_action",
            {"field": "assignee", "action": "note"},
        ),
        (
            Command(Action.ASSIGN, assignee="officer-1", department=FIRE),
            "field_not_for_action",
            {"field": "department", "action": "assign"},
        ),
    ]
    for command, code, params in cases:
        with pytest.raises(MissingInputError) as refused:
            Workflow().apply(session, case, command, DISPATCHER, T0)
        assert (refused.value.code, refused.value.params) == (code, params)
    assert case.assignee is None


def test_refusals_carry_codes_and_params(session: Session) -> None:
    workflow = Workflow()
    case = _case(session)
    with pytest.raises(IllegalTransitionError) as illegal:
        workflow.apply(session, case, Command(Action.RESOLVE), LAW_WORKER, T0)
    assert illegal.value.code == "action_not_allowed"
    assert illegal.value.params == {"case_id": case.id, "action": "resolve", "state": "dispatched"}
    with pytest.raises(MissingInputError) as reason:
        workflow.apply(session, case, Command(Action.NOTE, reason=" "), DISPATCHER, T0)
    assert (reason.value.code, reason.value.params) == (
        "reason_required",
        {"case_id": case.id, "action": "note"},
    )
    with pytest.raises(MissingInputError) as merge:
        workflow.apply(session, case, Command(Action.MERGE, duplicate_of=99999), DISPATCHER, T0)
    assert (merge.value.code, merge.value.params) == (
        "merge_target_not_found",
        {"case_id": 99999},
    )
    assert str(merge.value) == "case 99999 does not exist"  # the English message stays


def _codes_raised() -> set[str]:
    """Every code the workflow module names, read from its source so a new one is not missed."""
    source = Path(__import__("dispatch.workflow").workflow.__file__).read_text(encoding="utf-8")
    named = set(re.findall(r'^\s+"([a-z]+(?:_[a-z]+)+)",$', source, flags=re.MULTILINE))
    named |= set(re.findall(r'code = "([a-z_]+)"', source))
    return named - {"workflow_refused"}  # the API's fallback code, worded by its owner


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_every_refusal_code_has_a_message_in_both_languages(language: str) -> None:
    messages = load_catalogue(language)
    codes = _codes_raised()
    assert {"assignee_not_in_department", "close_reason_only_on_close"} <= codes
    missing = sorted(code for code in codes if f"error.{code}" not in messages)
    assert missing == []


def test_a_refusal_is_a_workflow_error_with_a_default_code() -> None:
    error = WorkflowError("something")
    assert (error.code, error.params) == ("workflow_refused", {})
