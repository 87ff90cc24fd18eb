"""The case workflow: who may do what to a case, in which state, and the audit log entry it writes.

The district's practice: register -> dispatch -> accept -> handle -> resolve -> verify -> close,
plus return (with a reason), transfer (history kept), merge duplicates, park overdue cases on
the parked register (挂账) and reopen. Every action is checked here, not only in the API, so the
SLA sweep and camera verification obey the same rules as people do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from contracts.events import ViolationKind
from dispatch.config import SCOPED_ROLES, Department, Role
from storage.audit import append_entry
from storage.tables import Case, CaseState, CaseTransition, utcnow

log = logging.getLogger(__name__)

S = CaseState


class Action(StrEnum):
    DISPATCH = "dispatch"  # assign to a department (派遣); also takes a case off the register
    TRANSFER = "transfer"  # move to another department; the old one stays in the history (转派)
    ACCEPT = "accept"  # the department takes it on (受理)
    NOTE = "note"  # a working note; changes no state
    ATTACH = "attach"  # an after-photo (or other file); changes no state
    RESOLVE = "resolve"  # the department says it is fixed (办结)
    VERIFY = "verify"  # the fix is confirmed, by camera or by the command centre: closes (核查结案)
    REOPEN = "reopen"  # not fixed after all: back to the department (重办)
    RETURN = "return"  # wrong alarm or not in remit: back to the command centre (退回)
    CLOSE = "close"  # the command centre files a case without a fix (false alarm, 不予立案)
    MERGE = "merge"  # a duplicate of another case (合并)
    PARK = "park"  # overdue: onto the parked register (挂账)
    ESCALATE = "escalate"  # the SLA sweep: to the supervisor, then the department head (升级)
    RECLASSIFY = "reclassify"  # the camera called it the wrong kind of violation (改类)


class CloseReason(StrEnum):
    """Why the command centre filed a case without a fix; a close may also name none."""

    FALSE_ALARM = "false_alarm"  # the camera saw no such thing: its frames teach the detector
    NOT_A_VIOLATION = "not_a_violation"  # real, but allowed (a permit, an emergency vehicle)
    NOT_IN_REMIT = "not_in_remit"  # nobody in the district handles it
    OTHER = "other"


_WORKING = frozenset({S.DISPATCHED, S.ACCEPTED})
_UNFINISHED = frozenset({S.NEW, S.DISPATCHED, S.ACCEPTED, S.RETURNED, S.PARKED})
_ALIVE = _UNFINISHED | {S.RESOLVED}
# action -> (states it may start from, state it leads to; None keeps the state)
TRANSITIONS: dict[Action, tuple[frozenset[CaseState], CaseState | None]] = {
    Action.DISPATCH: (frozenset({S.NEW, S.RETURNED, S.PARKED}), S.DISPATCHED),
    Action.TRANSFER: (_WORKING | {S.RETURNED}, S.DISPATCHED),
    Action.ACCEPT: (frozenset({S.DISPATCHED}), S.ACCEPTED),
    Action.NOTE: (_ALIVE, None),
    Action.ATTACH: (frozenset({S.ACCEPTED, S.RESOLVED}), None),
    Action.RESOLVE: (frozenset({S.ACCEPTED}), S.RESOLVED),
    Action.VERIFY: (frozenset({S.RESOLVED}), S.CLOSED),
    Action.REOPEN: (frozenset({S.RESOLVED, S.CLOSED}), S.DISPATCHED),
    Action.RETURN: (_WORKING, S.RETURNED),
    Action.CLOSE: (frozenset({S.NEW, S.RETURNED, S.PARKED}), S.CLOSED),
    Action.MERGE: (_ALIVE, S.MERGED),
    Action.PARK: (frozenset({S.NEW, S.DISPATCHED, S.ACCEPTED, S.RETURNED}), S.PARKED),
    Action.ESCALATE: (frozenset({S.NEW, S.DISPATCHED, S.ACCEPTED, S.RETURNED}), None),
    Action.RECLASSIFY: (_UNFINISHED, None),
}

# Who may take each action. Department roles act only on their own department's cases (the API
# shows them no other), and the system (SLA sweep, camera verification) is a role of its own.
PERMISSIONS: dict[Action, frozenset[Role]] = {
    Action.DISPATCH: frozenset({Role.DISPATCHER}),
    Action.TRANSFER: frozenset({Role.DISPATCHER, Role.SYSTEM}),
    Action.ACCEPT: SCOPED_ROLES,
    Action.NOTE: SCOPED_ROLES | {Role.DISPATCHER, Role.SYSTEM},
    Action.ATTACH: SCOPED_ROLES,
    Action.RESOLVE: SCOPED_ROLES,
    Action.VERIFY: frozenset({Role.DISPATCHER, Role.SYSTEM}),
    Action.REOPEN: frozenset({Role.DISPATCHER, Role.SUPERVISOR, Role.SYSTEM}),
    Action.RETURN: SCOPED_ROLES,
    Action.CLOSE: frozenset({Role.DISPATCHER}),
    Action.MERGE: frozenset({Role.DISPATCHER}),
    Action.PARK: frozenset({Role.DISPATCHER, Role.SUPERVISOR}),
    Action.ESCALATE: frozenset({Role.SYSTEM}),
    Action.RECLASSIFY: frozenset({Role.DISPATCHER}),
}
NEEDS_REASON = frozenset(
    {
        Action.NOTE,
        Action.RETURN,
        Action.CLOSE,
        Action.PARK,
        Action.REOPEN,
        Action.TRANSFER,
        Action.RECLASSIFY,
    }
)


@dataclass(frozen=True)
class Actor:
    """Who acts: a signed-in person, an integration token, or the system itself."""

    name: str
    role: Role
    department: Department | None = None

    def may(self, action: Action) -> bool:
        return self.role in PERMISSIONS[action]

    def sees(self, case: Case) -> bool:
        """Department roles see their department's cases only; everybody else sees every case."""
        if self.role in SCOPED_ROLES:
            return case.department is not None and case.department == self.department
        return True


def system_actor(name: str) -> Actor:
    return Actor(name=name, role=Role.SYSTEM)


@dataclass(frozen=True)
class Command:
    action: Action
    reason: str = ""
    department: Department | None = None  # dispatch, transfer
    duplicate_of: int | None = None  # merge
    detail: dict[str, Any] = field(default_factory=dict)  # attach: the file; escalate: the level
    close_reason: CloseReason | None = None  # close: why, when the dispatcher says
    kind: ViolationKind | None = None  # reclassify: the kind it really is


class WorkflowError(Exception):
    """An action that cannot apply to a case as it stands."""


class IllegalTransitionError(WorkflowError):
    def __init__(self, case: Case, action: Action) -> None:
        allowed, _ = TRANSITIONS[action]
        super().__init__(
            f"case {case.id} is {case.state}: {action} applies only to {', '.join(sorted(allowed))}"
        )


class NotPermittedError(WorkflowError):
    def __init__(self, actor: Actor, action: Action) -> None:
        super().__init__(f"{actor.name} ({actor.role}) may not {action} cases")


class MissingInputError(WorkflowError):
    """The action needs something the command did not give (a reason, a department)."""


ResolveHook = Callable[[Session, Case, datetime], None]
"""Called when a case is resolved, inside the transaction (camera verification hangs here)."""

CommittedHook = Callable[[Action, int], None]
"""Called with (action, case id) once the transaction holding the action has committed; never
called for one rolled back. Its errors are logged, never raised to whoever acted."""


@dataclass(frozen=True)
class Assignment:
    """What a department's route gives a case handed to it: tier, priority, fresh deadlines."""

    tier: str
    priority: str
    ack_due_at: datetime
    sla_due_at: datetime
    escalate_to: str | None


Reroute = Callable[[Case, Department, datetime], Assignment]
"""The route a case takes once it is with a department, its clock starting now (the Router)."""


class Workflow:
    """Applies commands to cases. Built once by the composition root with its hooks."""

    def __init__(
        self,
        on_resolve: ResolveHook | None = None,
        reroute: Reroute | None = None,
        on_committed: CommittedHook | None = None,
    ) -> None:
        self._on_resolve = on_resolve
        self._reroute = reroute
        self._on_committed = on_committed
        # session.info: this workflow's actions awaiting the session's commit
        self._applied_key = f"civicwatch.workflow.applied.{id(self)}"

    def apply(
        self,
        session: Session,
        case: Case,
        command: Command,
        actor: Actor,
        now: datetime | None = None,
    ) -> CaseTransition:
        """Check and apply one command, writing its audit entry; raises WorkflowError. The
        caller commits."""
        now = now or utcnow()
        action = command.action
        if not actor.may(action):
            raise NotPermittedError(actor, action)
        allowed, target = TRANSITIONS[action]
        if case.state not in allowed:
            raise IllegalTransitionError(case, action)
        reason = command.reason.strip()
        if action in NEEDS_REASON and not reason:
            raise MissingInputError(f"{action} on case {case.id} needs a reason")
        if command.close_reason is not None and action is not Action.CLOSE:
            raise MissingInputError(f"close_reason applies to close, not {action}")
        detail = dict(command.detail)
        self._apply_effects(session, case, command, detail, now)
        transition = record_transition(
            session, case, target or S(case.state), actor.name, reason, now, action, detail
        )
        if action is Action.RESOLVE and self._on_resolve is not None:
            self._on_resolve(session, case, now)
        if self._on_committed is not None:
            self._after_commit(session, action, case.id)
        return transition

    def _after_commit(self, session: Session, action: Action, case_id: int) -> None:
        """Queue (action, case) for the committed hook; one listener pair per session."""
        applied: list[tuple[Action, int]] | None = session.info.get(self._applied_key)
        if applied is None:
            applied = session.info[self._applied_key] = []
            event.listen(session, "after_commit", self._deliver_committed)
            event.listen(session, "after_rollback", self._forget_applied)
        applied.append((action, case_id))

    def _deliver_committed(self, session: Session) -> None:
        applied: list[tuple[Action, int]] = session.info.get(self._applied_key, [])
        pending, applied[:] = list(applied), []
        hook = self._on_committed
        for action, case_id in pending:
            try:
                if hook is not None:
                    hook(action, case_id)
            except Exception:  # the action stands: what follows it must not undo or fail it
                log.exception("after-commit hook failed for %s on case %d", action, case_id)

    def _forget_applied(self, session: Session) -> None:
        """A rolled-back transaction's actions never happened: nothing to tell."""
        session.info.get(self._applied_key, []).clear()

    def _apply_effects(
        self,
        session: Session,
        case: Case,
        command: Command,
        detail: dict[str, Any],
        now: datetime,
    ) -> None:
        action = command.action
        if action in (Action.DISPATCH, Action.TRANSFER):
            department = command.department or (
                Department(case.department) if case.department else None
            )
            if department is None:
                raise MissingInputError(f"case {case.id} has no department yet: name one")
            if action is Action.TRANSFER and department == case.department:
                raise MissingInputError(f"case {case.id} is already with {department}")
            detail.update(from_department=case.department, department=department.value)
            case.department = department.value
            case.acknowledged_at = None
            case.escalation_level = 0
            case.overdue = False
            if self._reroute is not None:  # the new department's clock starts now
                self._assign(case, self._reroute(case, department, now), detail)
        elif action is Action.ACCEPT:
            case.acknowledged_at = now
        elif action is Action.RESOLVE:
            case.resolved_at = now
        elif action in (Action.VERIFY, Action.CLOSE):
            case.closed_at = now
        elif action is Action.REOPEN:
            case.resolved_at = case.closed_at = None
            case.acknowledged_at = None
            case.verification = None
        elif action is Action.MERGE:
            self._check_merge(session, case, command.duplicate_of)
            case.duplicate_of = command.duplicate_of
            detail["duplicate_of"] = command.duplicate_of
        elif action is Action.ESCALATE:
            case.escalation_level = int(detail.get("level", case.escalation_level + 1))
            case.escalated_at = now
        elif action is Action.RECLASSIFY:
            if command.kind is None:
                raise MissingInputError(f"reclassifying case {case.id} needs the kind it is")
            if command.kind == case.kind:
                raise MissingInputError(f"case {case.id} is already {command.kind}")
            detail.update(from_kind=case.kind, kind=command.kind.value)
            case.kind = command.kind.value
        if command.close_reason is not None:
            detail["close_reason"] = command.close_reason.value

    @staticmethod
    def _assign(case: Case, assignment: Assignment, detail: dict[str, Any]) -> None:
        case.tier = assignment.tier
        case.priority = assignment.priority
        case.ack_due_at = assignment.ack_due_at
        case.sla_due_at = assignment.sla_due_at
        case.escalate_to = assignment.escalate_to
        detail.update(
            tier=assignment.tier,
            priority=assignment.priority,
            ack_due_at=assignment.ack_due_at.isoformat(),
            sla_due_at=assignment.sla_due_at.isoformat(),
        )

    @staticmethod
    def _check_merge(session: Session, case: Case, target_id: int | None) -> None:
        if target_id is None:
            raise MissingInputError(f"merging case {case.id} needs duplicate_of: what it repeats")
        if target_id == case.id:
            raise MissingInputError(f"case {case.id} cannot duplicate itself")
        target = session.get(Case, target_id)
        if target is None:
            raise MissingInputError(f"case {target_id} does not exist")
        if target.state == S.MERGED:
            raise MissingInputError(
                f"case {target_id} is merged into case {target.duplicate_of}: merge into that"
            )


def record_transition(
    session: Session,
    case: Case,
    to_state: CaseState,
    actor: str,
    reason: str,
    at: datetime,
    action: Action,
    detail: dict[str, Any] | None = None,
) -> CaseTransition:
    """Move ``case`` to ``to_state`` and append who, what, when and why to the audit log."""
    # Linked through the relationship so case.transitions is current without a reload.
    transition = CaseTransition(
        case=case,
        action=action.value,
        from_state=case.state,
        to_state=to_state,
        actor=actor,
        reason=reason,
        at=at,
        detail=detail or {},
    )
    case.state = to_state
    case.updated_at = at
    return append_entry(session, transition)
