"""The case workflow against a real database: every transition audited, illegal ones refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.config import Department
from dispatch.workflow import (
    TRANSITIONS,
    Action,
    IllegalTransitionError,
    MissingInputError,
    apply_action,
)
from ingest.database import SessionFactory
from ingest.tables import Case, CaseState
from tests.factories import EventFactory, make_ingest


@pytest.fixture
def session(session_factory: SessionFactory, tmp_path: Path) -> Iterator[Session]:
    make_ingest(session_factory, tmp_path / "evidence").service.store(EventFactory().event())
    with session_factory() as session:
        yield session


def _case(session: Session) -> Case:
    return session.scalars(select(Case)).one()


def test_a_case_through_its_whole_life(session: Session) -> None:
    case = _case(session)
    assert case.state == CaseState.DISPATCHED
    steps = [
        (Action.ACCEPT, "officer-1", ""),
        (Action.RESOLVE, "officer-1", "car towed"),
        (Action.REOPEN, "dispatcher", "camera still sees it"),
        (Action.ACCEPT, "officer-2", ""),
        (Action.RESOLVE, "officer-2", "owner moved it"),
        (Action.CLOSE, "dispatcher", "confirmed on camera"),
    ]
    for action, actor, reason in steps:
        apply_action(session, case, action, actor, reason)
    session.commit()
    trail = [(t.from_state, t.to_state, t.actor, t.reason) for t in _case(session).transitions]
    assert trail[2:] == [
        ("dispatched", "accepted", "officer-1", ""),
        ("accepted", "resolved", "officer-1", "car towed"),
        ("resolved", "dispatched", "dispatcher", "camera still sees it"),
        ("dispatched", "accepted", "officer-2", ""),
        ("accepted", "resolved", "officer-2", "owner moved it"),
        ("resolved", "closed", "dispatcher", "confirmed on camera"),
    ]
    assert all(t.at.tzinfo is not None for t in _case(session).transitions)


def test_illegal_transitions_are_refused_and_change_nothing(session: Session) -> None:
    case = _case(session)
    for action in (Action.RESOLVE, Action.CLOSE, Action.REOPEN):
        with pytest.raises(IllegalTransitionError, match=r"is dispatched: .* applies only to"):
            apply_action(session, case, action, "someone")
    assert case.state == CaseState.DISPATCHED
    assert len(case.transitions) == 2


def test_return_needs_a_reason(session: Session) -> None:
    case = _case(session)
    with pytest.raises(MissingInputError, match="reason"):
        apply_action(session, case, Action.RETURN, "officer", "   ")
    apply_action(session, case, Action.RETURN, "officer", "not our jurisdiction")
    assert case.state == CaseState.RETURNED


def test_dispatch_transfers_to_another_department(session: Session) -> None:
    case = _case(session)
    apply_action(session, case, Action.RETURN, "officer", "it is a public road")
    transition = apply_action(
        session, case, Action.DISPATCH, "dispatcher", department=Department.PUBLIC_SECURITY
    )
    assert case.department == Department.PUBLIC_SECURITY
    assert transition.reason == "transferred from law_enforcement to public_security"


def test_transition_table_reaches_every_state_but_new() -> None:
    reachable = {target for _, target in TRANSITIONS.values()}
    assert reachable == set(CaseState) - {CaseState.NEW}
