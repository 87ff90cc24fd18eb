"""The case workflow: imperative actions, the transitions each allows, and the audit trail."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy.orm import Session

from dispatch.config import Department
from ingest.tables import Case, CaseState, CaseTransition, utcnow


class Action(StrEnum):
    DISPATCH = "dispatch"  # send (or transfer) to a department
    ACCEPT = "accept"  # the department takes it on
    RESOLVE = "resolve"  # the department handled it
    CLOSE = "close"  # the command centre confirms and files it
    RETURN = "return"  # wrong alarm or wrong department: back to the command centre
    REOPEN = "reopen"  # not actually resolved: dispatch again


# action -> (states it may start from, state it leads to)
TRANSITIONS: dict[Action, tuple[frozenset[CaseState], CaseState]] = {
    Action.DISPATCH: (
        frozenset({CaseState.NEW, CaseState.DISPATCHED, CaseState.ACCEPTED, CaseState.RETURNED}),
        CaseState.DISPATCHED,
    ),
    Action.ACCEPT: (frozenset({CaseState.DISPATCHED}), CaseState.ACCEPTED),
    Action.RESOLVE: (frozenset({CaseState.ACCEPTED}), CaseState.RESOLVED),
    Action.CLOSE: (frozenset({CaseState.RESOLVED, CaseState.RETURNED}), CaseState.CLOSED),
    Action.RETURN: (frozenset({CaseState.DISPATCHED, CaseState.ACCEPTED}), CaseState.RETURNED),
    Action.REOPEN: (frozenset({CaseState.RESOLVED, CaseState.CLOSED}), CaseState.DISPATCHED),
}


class WorkflowError(Exception):
    """An action that cannot apply to a case as it stands."""


class IllegalTransitionError(WorkflowError):
    def __init__(self, case: Case, action: Action) -> None:
        allowed, _ = TRANSITIONS[action]
        super().__init__(
            f"case {case.id} is {case.state}: {action} applies only to {', '.join(sorted(allowed))}"
        )


class MissingInputError(WorkflowError):
    """The action needs something the request did not give (a reason, a department)."""


def record_transition(
    session: Session, case: Case, to_state: CaseState, actor: str, reason: str, at: datetime
) -> CaseTransition:
    """Move ``case`` to ``to_state`` and write who, when and why into its audit trail."""
    # Linked through the relationship so case.transitions is current without a reload.
    transition = CaseTransition(
        case=case, from_state=case.state, to_state=to_state, actor=actor, reason=reason, at=at
    )
    session.add(transition)
    case.state = to_state
    case.updated_at = at
    return transition


def apply_action(
    session: Session,
    case: Case,
    action: Action,
    actor: str,
    reason: str = "",
    department: Department | None = None,
    now: datetime | None = None,
) -> CaseTransition:
    """Apply one action or raise WorkflowError; the caller commits."""
    allowed, target = TRANSITIONS[action]
    if case.state not in allowed:
        raise IllegalTransitionError(case, action)
    reason = reason.strip()
    if action is Action.RETURN and not reason:
        raise MissingInputError(f"returning case {case.id} needs a reason")
    if action is Action.DISPATCH:
        if department is None and case.department is None:
            raise MissingInputError(
                f"case {case.id} has no department yet: name one to dispatch it"
            )
        if department is not None and department != case.department:
            reason = reason or f"transferred from {case.department or 'nobody'} to {department}"
            case.department = department
    return record_transition(session, case, target, actor, reason, now or utcnow())
