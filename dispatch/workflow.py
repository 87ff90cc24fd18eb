"""The case workflow: who may do what to a case, in which state, and the audit log entry it writes.

The district's practice: register -> dispatch -> accept -> handle -> resolve -> verify -> close,
plus return (with a reason), transfer (history kept), merge duplicates, park overdue cases on
the parked register (挂账), reopen, and assign a case to a person of its department. A refusal
carries a stable ``code`` and its ``params`` (``error.<code>`` in the locale files) beside its
English message. Every action is checked here, not only in the API, so the
SLA sweep and camera verification obey the same rules as people do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from contracts.events import ViolationKind
from dispatch.config import SCOPED_ROLES, Department, Role, Tier
from dispatch.residents.consultation_record import escalate_for_transfer, withdraw_for_ending
from storage.audit import append_entry
from storage.tables import Case, CaseState, CaseTransition, ResidentReport, User, utcnow

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
    ASSIGN = "assign"  # to a person of the case's department, or back to nobody (指派)
    REPLY = "reply"  # a public reply the resident reads by tracking code (答复); keeps the state
    MEDIATE = "mediate"  # a resident asks to mediate a household matter: consultation (调解)


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
    Action.ASSIGN: (_WORKING, None),
    Action.REPLY: (_ALIVE | {S.CLOSED}, None),
    Action.MEDIATE: (frozenset({S.CLOSED}), S.DISPATCHED),
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
    # a supervisor only within the case's department (checked in Workflow.apply)
    Action.ASSIGN: frozenset({Role.DISPATCHER, Role.ADMIN, Role.SUPERVISOR}),
    Action.REPLY: SCOPED_ROLES | {Role.DISPATCHER, Role.SYSTEM},
    # the resident, by tracking code, acts through the system (dispatch/residents)
    Action.MEDIATE: frozenset({Role.SYSTEM}),
}
# The roles a case may be assigned to: the department's own people.
ASSIGNABLE_ROLES = frozenset({Role.WORKER, Role.SUPERVISOR})
# The command fields each action takes; any other given is refused, never silently ignored.
_FIELD_ACTIONS: dict[str, frozenset[Action]] = {
    "department": frozenset({Action.DISPATCH, Action.TRANSFER}),
    "duplicate_of": frozenset({Action.MERGE}),
    "kind": frozenset({Action.RECLASSIFY}),
    "assignee": frozenset({Action.ASSIGN}),
}
NEEDS_REASON = frozenset(
    {
        Action.NOTE,
        Action.REPLY,
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
    site_id: str | None = None  # council members: their site

    def may(self, action: Action) -> bool:
        return self.role in PERMISSIONS[action]

    def sees(self, case: Case) -> bool:
        """Department roles see their department's cases only; council members their site's
        community-tier (小事协商) cases; everybody else sees every case."""
        if self.role is Role.COUNCIL:
            return (
                self.site_id is not None
                and case.site_id == self.site_id
                and case.tier == Tier.COMMUNITY.value
            )
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
    assignee: str | None = None  # assign: a username of the case's department; "" unassigns


Param = str | int | None


class WorkflowError(Exception):
    """An action that cannot apply to a case as it stands.

    ``code`` is stable snake_case for programs and translations (``error.<code>`` in the locale
    files, with ``{param}`` placeholders); the message stays English for logs and API clients."""

    code = "workflow_refused"

    def __init__(self, message: str, code: str | None = None, **params: Param) -> None:
        super().__init__(message)
        self.code = code or type(self).code
        self.params: dict[str, Param] = params


class IllegalTransitionError(WorkflowError):
    code = "action_not_allowed"

    def __init__(self, case: Case, action: Action) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[action][0]))
        super().__init__(
            f"case {case.id} is {case.state}: {action} applies only to {allowed}",
            case_id=case.id,
            action=action.value,
            state=str(case.state),
        )


class NotPermittedError(WorkflowError):
    code = "role_not_permitted"

    def __init__(self, actor: Actor, action: Action, message: str = "", code: str = "") -> None:
        super().__init__(
            message or f"{actor.name} ({actor.role}) may not {action} cases",
            code or None,
            action=action.value,
            role=actor.role.value,
        )


class MissingInputError(WorkflowError):
    """The action needs something the command did not give (a reason, a department), or got
    something it cannot use (a field of another action, a person of another department)."""

    code = "workflow_invalid_input"


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
        if action is Action.ASSIGN and actor.role is Role.SUPERVISOR and not actor.sees(case):
            raise NotPermittedError(
                actor,
                action,
                f"{actor.name} supervises {actor.department}, not case {case.id}'s department",
                "not_case_department",
            )
        allowed, target = TRANSITIONS[action]
        if case.state not in allowed:
            raise IllegalTransitionError(case, action)
        reason = command.reason.strip()
        if action in NEEDS_REASON and not reason:
            raise MissingInputError(
                f"{action} on case {case.id} needs a reason",
                "reason_required",
                case_id=case.id,
                action=action.value,
            )
        _check_fields(command)
        if action is Action.REPLY and not _has_resident_report(session, case):
            raise WorkflowError(
                f"case {case.id} has no resident report: nobody would read a public reply",
                "reply_without_report",
                case_id=case.id,
            )
        detail = dict(command.detail)
        from_department = case.department
        self._apply_effects(session, case, command, detail, now)
        transition = record_transition(
            session, case, target or S(case.state), actor.name, reason, now, action, detail
        )
        if (
            action in (Action.DISPATCH, Action.TRANSFER)
            and from_department == Department.PROPERTY_MANAGEMENT.value
            and case.department != from_department
        ):
            # 大事派单 by hand or by the SLA sweep: the open consultation ends unsettled
            escalate_for_transfer(session, case, now, actor.name, reason)
        elif target in (S.CLOSED, S.MERGED):
            # filed or merged away before the council agreed: nothing is left to vote on
            withdraw_for_ending(session, case, now, actor.name, reason)
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
                raise MissingInputError(
                    f"case {case.id} has no department yet: name one",
                    "department_required",
                    case_id=case.id,
                )
            if action is Action.TRANSFER and department == case.department:
                raise MissingInputError(
                    f"case {case.id} is already with {department}",
                    "already_with_department",
                    case_id=case.id,
                    department=department.value,
                )
            detail.update(from_department=case.department, department=department.value)
            if case.assignee is not None and department != case.department:
                # the person belongs to the old department: the new one assigns its own
                detail["assignee_cleared"] = case.assignee
                case.assignee = None
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
                raise MissingInputError(
                    f"reclassifying case {case.id} needs the kind it is",
                    "kind_required",
                    case_id=case.id,
                )
            if command.kind == case.kind:
                raise MissingInputError(
                    f"case {case.id} is already {command.kind}",
                    "already_of_kind",
                    case_id=case.id,
                    kind=command.kind.value,
                )
            detail.update(from_kind=case.kind, kind=command.kind.value)
            case.kind = command.kind.value
        elif action is Action.REPLY:
            # The resident reads it on the tracking page; notes never reach them.
            detail["public"] = True
        # MEDIATE: dispatch/residents/followup.request_mediation places the case (tier, property
        # management, deadlines, consultation) before applying it; the detail says so.
        elif action is Action.ASSIGN:
            assignee = _check_assignee(session, case, (command.assignee or "").strip())
            detail.update(assignee=assignee, from_assignee=case.assignee)
            case.assignee = assignee
        if command.close_reason is not None:
            detail["close_reason"] = command.close_reason.value

    @staticmethod
    def _assign(case: Case, assignment: Assignment, detail: dict[str, Any]) -> None:
        """Put the case on its new route. The deadlines restart (docs/sla.md says why), and the
        entry records them before and after so the timeline can say the deadline moved."""
        detail.update(
            deadline_from=_iso(case.sla_due_at),
            deadline_to=_iso(assignment.sla_due_at),
            ack_deadline_from=_iso(case.ack_due_at),
            ack_deadline_to=_iso(assignment.ack_due_at),
        )
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
            raise MissingInputError(
                f"merging case {case.id} needs duplicate_of: what it repeats",
                "duplicate_of_required",
                case_id=case.id,
            )
        if target_id == case.id:
            raise MissingInputError(
                f"case {case.id} cannot duplicate itself", "merge_into_itself", case_id=case.id
            )
        target = session.get(Case, target_id)
        if target is None:
            raise MissingInputError(
                f"case {target_id} does not exist", "merge_target_not_found", case_id=target_id
            )
        if target.state == S.MERGED:
            raise MissingInputError(
                f"case {target_id} is merged into case {target.duplicate_of}: merge into that",
                "merge_target_merged",
                case_id=target_id,
                into=target.duplicate_of,
            )


@dataclass(frozen=True)
class Person:
    """Someone a case may be assigned to."""

    username: str
    display_name: str
    role: Role


def assignable_people(session: Session, department: Department) -> list[Person]:
    """The active workers and supervisors of ``department``, by display name."""
    users = session.scalars(
        select(User)
        .where(
            User.department == department.value,
            User.active.is_(True),
            User.role.in_([role.value for role in ASSIGNABLE_ROLES]),
        )
        .order_by(User.display_name, User.username)
    )
    return [Person(u.username, u.display_name or u.username, Role(u.role)) for u in users]


def _check_assignee(session: Session, case: Case, username: str) -> str | None:
    """The person to assign (None: unassign), once known to work in the case's department."""
    if not username:
        if case.assignee is None:
            raise MissingInputError(
                f"case {case.id} is assigned to nobody", "not_assigned", case_id=case.id
            )
        return None
    if username == case.assignee:
        raise MissingInputError(
            f"case {case.id} is already assigned to {username}",
            "already_assigned",
            case_id=case.id,
            assignee=username,
        )
    user = session.scalars(select(User).where(User.username == username)).one_or_none()
    if (
        user is None
        or not user.active
        or user.role not in ASSIGNABLE_ROLES
        or user.department != case.department
    ):
        raise MissingInputError(
            f"{username[:64]} is no active worker or supervisor of {case.department}",
            "assignee_not_in_department",
            assignee=username[:64],
            department=case.department,
        )
    return user.username


def _has_resident_report(session: Session, case: Case) -> bool:
    """A resident's report names ``case`` or a duplicate merged into it: someone may read a
    public reply by tracking code."""
    merged = select(Case.id).where(Case.duplicate_of == case.id)
    found = session.scalar(
        select(ResidentReport.id)
        .where((ResidentReport.case_id == case.id) | ResidentReport.case_id.in_(merged))
        .limit(1)
    )
    return found is not None


def _check_fields(command: Command) -> None:
    """Refuse a field given with an action that takes none of it."""
    action = command.action
    if command.close_reason is not None and action is not Action.CLOSE:
        raise MissingInputError(
            f"close_reason applies to close, not {action}",
            "close_reason_only_on_close",
            action=action.value,
        )
    given = {
        "department": command.department is not None,
        "duplicate_of": command.duplicate_of is not None,
        "kind": command.kind is not None,
        "assignee": command.assignee is not None,
    }
    for name, present in given.items():
        if present and action not in _FIELD_ACTIONS[name]:
            raise MissingInputError(
                f"{name} applies to {', '.join(sorted(_FIELD_ACTIONS[name]))}, not {action}",
                "field_not_for_action",
                field=name,
                action=action.value,
            )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


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
