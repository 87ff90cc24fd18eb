"""The case workflow on a real database: every action, who may take it, and its audit entry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts.events import ViolationKind
from dispatch.config import Department, Role, RoutingSettings
from dispatch.kinds import DEFAULT_ROUTES
from dispatch.routing import Router
from dispatch.workflow import (
    NEEDS_REASON,
    PERMISSIONS,
    TRANSITIONS,
    Action,
    Actor,
    Command,
    IllegalTransitionError,
    MissingInputError,
    NotPermittedError,
    Workflow,
    system_actor,
)
from storage.audit import verify_chain
from storage.database import SessionFactory
from storage.tables import Case, CaseState, CaseTransition
from tests.factories import T0, EventFactory, make_ingest

LAW = Department.LAW_ENFORCEMENT
DISPATCHER = Actor("desk", Role.DISPATCHER)
WORKER = Actor("officer-1", Role.WORKER, LAW)
SUPERVISOR = Actor("chief", Role.SUPERVISOR, LAW)
ADMIN = Actor("root", Role.ADMIN)
INTEGRATION = Actor("city-brain", Role.INTEGRATION)
SYSTEM = system_actor("sla-sweep")
ACTORS = {
    Role.DISPATCHER: DISPATCHER,
    Role.WORKER: WORKER,
    Role.SUPERVISOR: SUPERVISOR,
    Role.ADMIN: ADMIN,
    Role.INTEGRATION: INTEGRATION,
    Role.SYSTEM: SYSTEM,
}
# Who may take each action, written out so a change to PERMISSIONS has to change this too.
EXPECTED_PERMISSIONS = {
    Action.DISPATCH: {Role.DISPATCHER},
    Action.TRANSFER: {Role.DISPATCHER, Role.SYSTEM},
    Action.ACCEPT: {Role.SUPERVISOR, Role.WORKER},
    Action.NOTE: {Role.SUPERVISOR, Role.WORKER, Role.DISPATCHER, Role.SYSTEM},
    Action.ATTACH: {Role.SUPERVISOR, Role.WORKER},
    Action.RESOLVE: {Role.SUPERVISOR, Role.WORKER},
    Action.VERIFY: {Role.DISPATCHER, Role.SYSTEM},
    Action.REOPEN: {Role.DISPATCHER, Role.SUPERVISOR, Role.SYSTEM},
    Action.RETURN: {Role.SUPERVISOR, Role.WORKER},
    Action.CLOSE: {Role.DISPATCHER},
    Action.MERGE: {Role.DISPATCHER},
    Action.PARK: {Role.DISPATCHER, Role.SUPERVISOR},
    Action.ESCALATE: {Role.SYSTEM},
    Action.RECLASSIFY: {Role.DISPATCHER},
    Action.ASSIGN: {Role.DISPATCHER, Role.ADMIN, Role.SUPERVISOR},
    Action.REPLY: {Role.SUPERVISOR, Role.WORKER, Role.DISPATCHER, Role.SYSTEM},
    Action.MEDIATE: {Role.SYSTEM},
}
WORKFLOW = Workflow()


@pytest.fixture
def session(session_factory: SessionFactory, tmp_path: Path) -> Iterator[Session]:
    """Two cases from real events: both dispatched to law enforcement by the default route."""
    service = make_ingest(session_factory, tmp_path / "evidence").service
    events = EventFactory()
    service.store(events.event())
    service.store(events.event())
    with session_factory() as session:
        yield session


def _cases(session: Session) -> list[Case]:
    return list(session.scalars(select(Case).order_by(Case.id)))


def _apply(session: Session, case: Case, actor: Actor, action: Action, **kw: object) -> None:
    WORKFLOW.apply(session, case, Command(action, **kw), actor, T0)  # type: ignore[arg-type]


def _entries(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(CaseTransition)) or 0)


def test_a_case_through_its_whole_life_every_step_audited(session: Session) -> None:
    case = _cases(session)[0]
    assert case.state == CaseState.DISPATCHED
    steps: list[tuple[Actor, Command]] = [
        (WORKER, Command(Action.ACCEPT)),
        (WORKER, Command(Action.NOTE, reason="owner is on the phone")),
        (WORKER, Command(Action.ATTACH, detail={"sha256": "ab" * 32, "label": "after"})),
        (WORKER, Command(Action.RESOLVE, reason="car towed")),
        (DISPATCHER, Command(Action.REOPEN, reason="camera still sees it")),
        (SUPERVISOR, Command(Action.ACCEPT)),
        (SUPERVISOR, Command(Action.RESOLVE, reason="owner moved it")),
        (DISPATCHER, Command(Action.VERIFY, reason="clear on camera")),
    ]
    for offset, (actor, command) in enumerate(steps):
        WORKFLOW.apply(session, case, command, actor, T0 + timedelta(minutes=offset))
    session.commit()
    trail = [(t.action, t.from_state, t.to_state, t.actor) for t in case.transitions]
    assert trail[2:] == [
        ("accept", "dispatched", "accepted", "officer-1"),
        ("note", "accepted", "accepted", "officer-1"),
        ("attach", "accepted", "accepted", "officer-1"),
        ("resolve", "accepted", "resolved", "officer-1"),
        ("reopen", "resolved", "dispatched", "desk"),
        ("accept", "dispatched", "accepted", "chief"),
        ("resolve", "accepted", "resolved", "chief"),
        ("verify", "resolved", "closed", "desk"),
    ]
    assert case.transitions[4].detail == {"sha256": "ab" * 32, "label": "after"}
    assert case.closed_at == T0 + timedelta(minutes=7)
    seqs = [t.seq or 0 for t in case.transitions]
    assert all(seqs)
    assert seqs == sorted(seqs)
    assert all(t.at.tzinfo is not None for t in case.transitions)
    assert verify_chain(session).intact


@pytest.mark.parametrize("action", list(Action))
def test_permissions_are_as_the_district_assigns_them(action: Action) -> None:
    assert set(PERMISSIONS[action]) == EXPECTED_PERMISSIONS[action]
    for role, actor in ACTORS.items():
        assert actor.may(action) is (role in EXPECTED_PERMISSIONS[action])


@pytest.mark.parametrize(
    ("role", "action"),
    [
        (role, action)
        for action in Action
        for role in ACTORS
        if role not in EXPECTED_PERMISSIONS[action]
    ],
)
def test_every_refused_role_is_refused_and_nothing_changes(
    session: Session, role: Role, action: Action
) -> None:
    case = _cases(session)[0]
    before = (case.state, case.department, _entries(session))
    command = Command(action, reason="because", department=Department.PUBLIC_SECURITY)
    with pytest.raises(NotPermittedError, match=f"may not {action}"):
        WORKFLOW.apply(session, case, command, ACTORS[role], T0)
    assert (case.state, case.department, _entries(session)) == before


def test_illegal_transitions_are_refused_and_change_nothing(session: Session) -> None:
    case = _cases(session)[0]
    before = _entries(session)
    for actor, action in ((WORKER, Action.RESOLVE), (DISPATCHER, Action.CLOSE)):
        with pytest.raises(IllegalTransitionError, match=r"is dispatched: .* applies only to"):
            _apply(session, case, actor, action, reason="x")
    with pytest.raises(IllegalTransitionError):
        _apply(session, case, DISPATCHER, Action.REOPEN, reason="x")
    assert case.state == CaseState.DISPATCHED
    assert _entries(session) == before


@pytest.mark.parametrize("action", sorted(NEEDS_REASON))
def test_actions_that_need_a_reason_refuse_a_blank_one(session: Session, action: Action) -> None:
    case = _cases(session)[0]
    actor = next(ACTORS[role] for role in ACTORS if role in EXPECTED_PERMISSIONS[action])
    if action is Action.REOPEN:
        _apply(session, case, WORKER, Action.ACCEPT)
        _apply(session, case, WORKER, Action.RESOLVE)
    elif action is Action.CLOSE:
        _apply(session, case, WORKER, Action.RETURN, reason="not ours")
    state = case.state
    with pytest.raises(MissingInputError, match="needs a reason"):
        _apply(session, case, actor, action, reason="   ", department=Department.PUBLIC_SECURITY)
    assert case.state == state


def test_transfer_keeps_every_department_in_the_audit_history(session: Session) -> None:
    case = _cases(session)[0]
    _apply(session, case, WORKER, Action.ACCEPT)
    case.escalation_level = 1
    _apply(
        session,
        case,
        DISPATCHER,
        Action.TRANSFER,
        reason="a public road",
        department=Department.PUBLIC_SECURITY,
    )
    assert (case.state, case.department) == (CaseState.DISPATCHED, "public_security")
    assert (case.acknowledged_at, case.escalation_level) == (None, 0)
    with pytest.raises(MissingInputError, match="already with public_security"):
        _apply(
            session,
            case,
            DISPATCHER,
            Action.TRANSFER,
            reason="x",
            department=Department.PUBLIC_SECURITY,
        )
    _apply(
        session,
        case,
        DISPATCHER,
        Action.TRANSFER,
        reason="a fire lane after all",
        department=Department.FIRE_RESCUE,
    )
    session.commit()
    history = [
        (t.detail.get("from_department"), t.detail.get("department"), t.reason)
        for t in case.transitions
        if t.action == Action.TRANSFER
    ]
    assert history == [
        ("law_enforcement", "public_security", "a public road"),
        ("public_security", "fire_rescue", "a fire lane after all"),
    ]


def test_return_then_dispatch_elsewhere(session: Session) -> None:
    case = _cases(session)[0]
    _apply(session, case, WORKER, Action.RETURN, reason="not in our remit")
    assert case.state == CaseState.RETURNED
    _apply(session, case, DISPATCHER, Action.DISPATCH, department=Department.PUBLIC_SECURITY)
    assert (case.state, case.department) == (CaseState.DISPATCHED, "public_security")
    assert case.transitions[-1].detail == {
        "from_department": "law_enforcement",
        "department": "public_security",
    }


def test_close_without_a_fix_and_park_then_take_off_the_register(session: Session) -> None:
    first, second = _cases(session)
    _apply(session, first, WORKER, Action.RETURN, reason="a false alarm")
    _apply(session, first, DISPATCHER, Action.CLOSE, reason="false alarm: a parked bicycle")
    assert (first.state, first.closed_at) == (CaseState.CLOSED, T0)
    _apply(session, second, SUPERVISOR, Action.PARK, reason="owner abroad")
    assert second.state == CaseState.PARKED
    with pytest.raises(IllegalTransitionError):
        _apply(session, second, SYSTEM, Action.ESCALATE, detail={"level": 1})
    _apply(session, second, DISPATCHER, Action.DISPATCH)  # back to its department
    assert (second.state, second.department) == (CaseState.DISPATCHED, "law_enforcement")


def test_reopen_clears_the_resolution_closing_acknowledgement_and_verification(
    session: Session,
) -> None:
    case = _cases(session)[0]
    _apply(session, case, WORKER, Action.ACCEPT)
    _apply(session, case, WORKER, Action.RESOLVE)
    case.verification = "not_clear"
    assert (case.acknowledged_at, case.resolved_at) == (T0, T0)
    _apply(session, case, SYSTEM, Action.REOPEN, reason="the camera still sees the car")
    assert case.state == CaseState.DISPATCHED
    cleared = (case.acknowledged_at, case.resolved_at, case.closed_at, case.verification)
    assert all(value is None for value in cleared)
    _apply(session, case, WORKER, Action.ACCEPT)
    _apply(session, case, WORKER, Action.RESOLVE)
    _apply(session, case, DISPATCHER, Action.VERIFY)
    _apply(session, case, SUPERVISOR, Action.REOPEN, reason="back again")
    assert (case.state, case.closed_at) == (CaseState.DISPATCHED, None)


def test_merge_checks_its_target(session: Session) -> None:
    first, second = _cases(session)
    for duplicate_of, message in (
        (None, "needs duplicate_of"),
        (second.id, "cannot duplicate itself"),
        (99_999, "does not exist"),
    ):
        with pytest.raises(MissingInputError, match=message):
            _apply(session, second, DISPATCHER, Action.MERGE, duplicate_of=duplicate_of)
    assert second.state == CaseState.DISPATCHED
    _apply(session, second, DISPATCHER, Action.MERGE, duplicate_of=first.id)
    assert (second.state, second.duplicate_of) == (CaseState.MERGED, first.id)
    assert second.transitions[-1].detail == {"duplicate_of": first.id}
    with pytest.raises(MissingInputError, match=f"merged into case {first.id}: merge into that"):
        _apply(session, first, DISPATCHER, Action.MERGE, duplicate_of=second.id)


def test_escalate_is_the_systems_and_records_the_level(session: Session) -> None:
    case = _cases(session)[0]
    _apply(session, case, SYSTEM, Action.ESCALATE, detail={"level": 1, "to": "supervisor"})
    assert (case.escalation_level, case.escalated_at, case.state) == (1, T0, "dispatched")
    _apply(session, case, SYSTEM, Action.ESCALATE, detail={"level": 2, "to": "head"})
    assert case.escalation_level == 2
    assert case.transitions[-1].detail == {"level": 2, "to": "head"}


def test_the_resolve_hook_runs_inside_the_transaction(session: Session) -> None:
    seen: list[tuple[int, str]] = []
    workflow = Workflow(on_resolve=lambda _s, case, _now: seen.append((case.id, case.state)))
    case = _cases(session)[0]
    workflow.apply(session, case, Command(Action.ACCEPT), WORKER, T0)
    assert seen == []
    workflow.apply(session, case, Command(Action.RESOLVE), WORKER, T0)
    assert seen == [(case.id, "resolved")]


def test_department_roles_see_only_their_departments_cases(session: Session) -> None:
    case = _cases(session)[0]
    assert WORKER.sees(case)
    assert SUPERVISOR.sees(case)
    assert not Actor("fireman", Role.WORKER, Department.FIRE_RESCUE).sees(case)
    assert all(actor.sees(case) for actor in (DISPATCHER, ADMIN, INTEGRATION, SYSTEM))


def test_transition_table_reaches_every_state_but_new() -> None:
    reachable = {target for _, target in TRANSITIONS.values() if target is not None}
    # WARNED: only ingest puts an item there and takes it out (the warning stage).
    assert reachable == set(CaseState) - {CaseState.NEW, CaseState.WARNED}


def test_a_transfer_restarts_the_clock_on_the_new_departments_route(session: Session) -> None:
    """Manual transfers get the receiving department's route and deadlines, as the sweep's do."""
    router = Router(RoutingSettings())
    workflow = Workflow(reroute=router.assignment)
    case = _cases(session)[0]
    assert case.department == LAW
    moved_at = T0 + timedelta(hours=5)
    workflow.apply(
        session,
        case,
        Command(Action.TRANSFER, reason="blocks the fire lane", department=Department.FIRE_RESCUE),
        DISPATCHER,
        moved_at,
    )
    # No rule sends parking to the fire department: the case keeps its kind's timings.
    route = DEFAULT_ROUTES[ViolationKind.ILLEGAL_PARKING]
    assert case.department == Department.FIRE_RESCUE
    assert case.ack_due_at == moved_at + timedelta(minutes=route.ack_minutes)
    assert case.sla_due_at == moved_at + timedelta(minutes=route.sla_minutes)
    assert case.priority == route.priority
    assert not case.overdue
    entry = case.transitions[-1]
    assert entry.detail["from_department"] == LAW
    assert entry.detail["sla_due_at"] == case.sla_due_at.isoformat()


def test_a_council_member_sees_no_case_until_consultations_scope_the_role() -> None:
    from dispatch.http.deps import scope_of

    council = Actor(name="lead-3", role=Role.COUNCIL)
    case = Case(department=Department.PROPERTY_MANAGEMENT.value, site_id="compound-demo")
    assert not council.sees(case)
    assert scope_of(council) == ""  # matches no department: the SQL filter returns nothing
