"""The SLA sweep: one scheduled job that marks overdue cases, escalates them and moves community
cases whose SLA ran out to their department.

Restart-safe: every deadline and escalation level lives in the case row, so a sweep after a
restart (or on another server) picks up exactly where the last one stopped, and running it twice
at the same moment changes nothing the second time.

A case is overdue while it owes a deadline that has passed: acknowledging it (unaccepted past
ack_due_at) or resolving it (open past sla_due_at). Going overdue counts one SLA breach, labelled
with the deadline missed first. While overdue it escalates through the workflow: to the
supervisor ``supervisor_after_minutes`` after that deadline, to the department head
``head_after_minutes`` after that, counted on the case's route clock. Accepting a case that was
overdue only for acknowledgement ends that episode (overdue and escalation level reset), so its
resolve deadline escalates afresh. A community-tier case past its resolve deadline is transferred
to its ``escalate_to`` department with new deadlines instead of escalating.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, func, inspect, or_, select, update
from sqlalchemy.orm import Session

from dispatch.calendar import WorkingCalendar
from dispatch.config import DeadlineClock, Department, RoutingSettings, SlaSettings, Tier
from dispatch.metrics import DispatchMetrics
from dispatch.routing import Router
from dispatch.workflow import Action, Command, Workflow, WorkflowError, system_actor
from storage.database import SessionFactory
from storage.tables import OPEN_STATES, Case, CaseState, CaseTransition, utcnow

log = logging.getLogger(__name__)

SWEEP_ACTOR = "sla-sweep"
ESCALATION_TARGETS = {1: "supervisor", 2: "head"}
ACK = "ack"
RESOLVE = "resolve"

# "Due soon" is the last quarter of a deadline's own window, never more than 30 minutes: a fixed
# 30 minutes equalled the fire lane's whole window, so such cases were orange from the start.
DUE_SOON_SHARE = 0.25
DUE_SOON_CAP = timedelta(minutes=30)
# Actions that give a case fresh deadlines on its (new) department's route: the clock restarts.
CLOCK_STARTS = (Action.DISPATCH.value, Action.TRANSFER.value)
# Still owing its fix (the parked register too: its missed deadline stays missed).
_UNFINISHED = OPEN_STATES | {CaseState.PARKED}


class DeadlineState(StrEnum):
    OK = "ok"  # running, with more than the "due soon" margin left
    SOON = "soon"  # running, inside the last quarter of its window (30 minutes at most)
    OVER = "over"  # running and passed
    MET = "met"  # done: accepted (accept deadline) or resolved (resolve deadline); see ``late``
    OFF = "off"  # no longer owed: the case was finished (closed, merged) without it


@dataclass(frozen=True)
class Deadline:
    """One deadline of a case as it stands at ``now``."""

    state: DeadlineState
    due_at: datetime
    minutes_left: int | None  # running: whole minutes to go, negative once passed; else None
    met_at: datetime | None = None  # when it was met (MET only)
    late: bool = False  # MET after ``due_at``

    @property
    def running(self) -> bool:
        return self.state in (DeadlineState.OK, DeadlineState.SOON, DeadlineState.OVER)


@dataclass(frozen=True)
class DeadlineStatus:
    """A case's accept (受理) and resolve (办结) deadlines, each with its own state, so a page
    never shows one deadline's "overdue" beside the other's "7 minutes left"."""

    accept: Deadline | None  # None: the case has no such deadline (not routed yet)
    resolve: Deadline | None

    @property
    def current(self) -> Deadline | None:
        """The deadline the case owes first: accept while it runs, else resolve."""
        if self.accept is not None and self.accept.running:
            return self.accept
        return self.resolve

    @property
    def worst(self) -> DeadlineState | None:
        """The most urgent state of a running deadline (over, soon, ok); None when none runs."""
        running = [d.state for d in (self.accept, self.resolve) if d is not None and d.running]
        for state in (DeadlineState.OVER, DeadlineState.SOON, DeadlineState.OK):
            if state in running:
                return state
        return None


def deadline_status(
    case: Case, now: datetime, clock_started_at: datetime | None = None
) -> DeadlineStatus:
    """Where ``case`` stands on its accept and resolve deadlines at ``now``.

    ``clock_started_at`` is when the case's current deadlines were set (its last dispatch or
    transfer, else when it opened), which sizes the "due soon" margin. Without it, the case's
    loaded transitions tell, else ``opened_at`` is used; for a list, fetch them all at once with
    :func:`clock_starts`."""
    start = clock_started_at or _clock_start(case)
    unfinished = case.state in _UNFINISHED
    accept = None
    if case.ack_due_at is not None:
        accept = _deadline(case.ack_due_at, case.acknowledged_at, unfinished, start, now)
    resolve = None
    if case.sla_due_at is not None:
        resolve = _deadline(case.sla_due_at, case.resolved_at, unfinished, start, now)
    return DeadlineStatus(accept=accept, resolve=resolve)


def clock_starts(session: Session, case_ids: Iterable[int]) -> dict[int, datetime]:
    """When each case's current deadlines were set by a dispatch or transfer, in one query; a
    case never dispatched by hand is absent (its clock started when it opened)."""
    ids = list(case_ids)
    if not ids:
        return {}
    # the latest entry by its id, the audit chain's order, whatever its clock said
    latest = (
        select(func.max(CaseTransition.id))
        .where(CaseTransition.case_id.in_(ids), CaseTransition.action.in_(CLOCK_STARTS))
        .group_by(CaseTransition.case_id)
    )
    rows = session.execute(
        select(CaseTransition.case_id, CaseTransition.at).where(CaseTransition.id.in_(latest))
    ).all()
    return {int(case_id): at for case_id, at in rows}


def _clock_start(case: Case) -> datetime:
    if "transitions" not in inspect(case).unloaded:  # loaded already: costs no query
        starts = [t.at for t in case.transitions if t.action in CLOCK_STARTS]
        if starts:
            return starts[-1]  # transitions load in id order
    return case.opened_at


def _deadline(
    due_at: datetime, met_at: datetime | None, unfinished: bool, start: datetime, now: datetime
) -> Deadline:
    if met_at is not None:
        return Deadline(DeadlineState.MET, due_at, None, met_at=met_at, late=met_at > due_at)
    if not unfinished:
        return Deadline(DeadlineState.OFF, due_at, None)
    left = due_at - now
    minutes = int(left.total_seconds() // 60)
    if left <= timedelta(0):
        return Deadline(DeadlineState.OVER, due_at, minutes)
    margin = min(DUE_SOON_CAP, max(due_at - start, timedelta(0)) * DUE_SOON_SHARE)
    state = DeadlineState.SOON if left <= margin else DeadlineState.OK
    return Deadline(state, due_at, minutes)


@dataclass
class SweepReport:
    """What one run did (its counts also feed the Prometheus counters)."""

    breaches: int = 0
    escalations: int = 0
    transfers: int = 0
    recovered: int = 0  # cases no longer overdue: accepted after missing only the ack deadline
    refused: int = 0  # the workflow refused an action (logged and counted)


@dataclass
class _Effects:
    """One batch's counter increments, applied only once its transaction has committed."""

    breaches: list[tuple[str, str, str]] = field(default_factory=list)
    escalations: list[tuple[str, str, str, str]] = field(default_factory=list)
    transfers: list[tuple[str, str, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def publish(self, metrics: DispatchMetrics, report: SweepReport) -> None:
        for labels in self.breaches:
            metrics.sla_breaches.labels(*labels).inc()
        for escalation in self.escalations:
            metrics.escalations.labels(*escalation).inc()
        for transfer in self.transfers:
            metrics.sla_transfers.labels(*transfer).inc()
        for action in self.refused:
            metrics.sla_sweep_errors.labels(action).inc()
        report.breaches += len(self.breaches)
        report.escalations += len(self.escalations)
        report.transfers += len(self.transfers)
        report.refused += len(self.refused)


class SlaSweep:
    """The sweep the scheduler runs every ``settings.sweep_seconds``; call :meth:`run`."""

    def __init__(
        self,
        session_factory: SessionFactory,
        workflow: Workflow,
        calendar: WorkingCalendar,
        settings: SlaSettings,
        metrics: DispatchMetrics,
        router: Router | None = None,
    ) -> None:
        """``router`` computes a transferred case's new route and deadlines and each case's
        clock; without one, the default routes on ``calendar`` apply."""
        self._sessions = session_factory
        self._workflow = workflow
        self._settings = settings
        self._metrics = metrics
        self._router = router or Router(RoutingSettings(), calendar=calendar)
        self._actor = system_actor(SWEEP_ACTOR)

    def run(self, now: datetime | None = None) -> SweepReport:
        """Sweep every open case that may need something at ``now``, a batch a transaction."""
        now = now or utcnow()
        report = SweepReport(recovered=self._end_ack_episodes(now))
        after_id = 0
        while True:
            effects = _Effects()
            with self._sessions.begin() as session:
                cases = session.scalars(
                    select(Case)
                    .where(Case.state.in_(OPEN_STATES), Case.id > after_id, self._due(now))
                    .order_by(Case.id)
                    .limit(self._settings.batch_size)
                    # Another server's sweep holding a case will handle it: skip, never wait.
                    .with_for_update(skip_locked=True)
                ).all()
                for case in cases:
                    self._sweep_case(session, case, now, effects)
            effects.publish(self._metrics, report)
            if len(cases) < self._settings.batch_size:
                break
            after_id = cases[-1].id
        if report.breaches or report.escalations or report.transfers:
            log.warning(
                "SLA sweep: %d breach(es), %d escalation(s), %d transfer(s)",
                report.breaches,
                report.escalations,
                report.transfers,
            )
        return report

    def _due(self, now: datetime) -> ColumnElement[bool]:
        """Cases that may need work at ``now``, on the deadline indexes: newly overdue, an
        escalation level possibly due, or a community case past its SLA. Escalation times on
        the working clock come no earlier than on the calendar clock, so this is a superset;
        :meth:`_sweep_case` decides exactly."""
        supervisor = timedelta(minutes=self._settings.supervisor_after_minutes)
        head = supervisor + timedelta(minutes=self._settings.head_after_minutes)
        return or_(
            and_(Case.overdue.is_(False), _missed_by(now)),
            and_(Case.escalation_level < 1, _missed_by(now - supervisor)),
            and_(Case.escalation_level < 2, _missed_by(now - head)),
            and_(
                Case.tier == Tier.COMMUNITY.value,
                Case.escalate_to.is_not(None),
                Case.sla_due_at <= now,
            ),
        )

    def _end_ack_episodes(self, now: datetime) -> int:
        """Overdue cases that owe no passed deadline any more (accepted after missing only the
        ack deadline) are on time again: a later resolve deadline escalates afresh."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(Case)
                .where(
                    Case.state.in_(OPEN_STATES),
                    Case.overdue.is_(True),
                    Case.sla_due_at > now,
                    or_(
                        Case.acknowledged_at.is_not(None),
                        Case.ack_due_at.is_(None),
                        Case.ack_due_at > now,
                    ),
                )
                .values(overdue=False, escalation_level=0, updated_at=now)
                .execution_options(synchronize_session=False)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    def _sweep_case(self, session: Session, case: Case, now: datetime, effects: _Effects) -> None:
        ack_missed = (
            case.acknowledged_at is None and case.ack_due_at is not None and case.ack_due_at <= now
        )
        resolve_missed = case.sla_due_at is not None and case.sla_due_at <= now
        if ack_missed:
            deadline, missed_at = ACK, case.ack_due_at
        elif resolve_missed:
            deadline, missed_at = RESOLVE, case.sla_due_at
        else:
            return
        assert missed_at is not None
        department = case.department or ""
        if not case.overdue:
            case.overdue = True
            case.updated_at = now
            effects.breaches.append((case.kind, department, deadline))
        if resolve_missed and case.tier == Tier.COMMUNITY.value and case.escalate_to:
            self._transfer(session, case, now, effects)
            return
        clock = self._clock(case)
        supervisor_at = self._router.after(
            clock, missed_at, self._settings.supervisor_after_minutes
        )
        head_at = self._router.after(clock, supervisor_at, self._settings.head_after_minutes)
        due_level = (supervisor_at <= now) + (head_at <= now)
        for level in range(case.escalation_level + 1, due_level + 1):
            target = ESCALATION_TARGETS[level]
            detail: dict[str, Any] = {
                "level": level,
                "deadline": deadline,
                "to": target,
                "department": case.department,
                "due_at": _iso(missed_at),
            }
            reason = (
                f"{deadline} deadline {self._local(case, missed_at)} missed: "
                f"to the {target}" + (f" of {case.department}" if case.department else "")
            )
            command = Command(Action.ESCALATE, reason=reason, detail=detail)
            if not self._apply(session, case, command, now, effects):
                return
            effects.escalations.append((case.kind, department, deadline, target))

    def _transfer(self, session: Session, case: Case, now: datetime, effects: _Effects) -> None:
        """The community tier ran out of time: the case goes to its escalation department; the
        workflow gives it that department's route and fresh deadlines from now."""
        assert case.escalate_to is not None  # the caller checked
        target = Department(case.escalate_to)
        source = case.department or ""
        missed = self._local(case, case.sla_due_at) if case.sla_due_at else "its deadline"
        command = Command(
            Action.TRANSFER,
            reason=f"{source or 'the community tier'} did not resolve it by {missed}: "
            f"escalated to {target}",
            department=target,
            detail={"deadline": RESOLVE},
        )
        if self._apply(session, case, command, now, effects):
            # 大事派单: the workflow escalated the case's open consultation (if any)
            effects.transfers.append((case.kind, source, target.value))

    def _apply(
        self, session: Session, case: Case, command: Command, now: datetime, effects: _Effects
    ) -> bool:
        """Apply through the workflow; a refusal (checked before any change) skips the case."""
        try:
            self._workflow.apply(session, case, command, self._actor, now)
        except WorkflowError as exc:
            log.error("SLA sweep cannot %s case %s: %s", command.action, case.id, exc)
            effects.refused.append(command.action.value)
            return False
        return True

    def _clock(self, case: Case) -> DeadlineClock:
        """The clock of the route the case is on now (escalation delays count on it)."""
        if case.department is None:
            return DeadlineClock.CALENDAR
        return self._router.route_for_department(
            Department(case.department),
            case.kind,
            case.zone_kind,
            case.zone_id,
            case.site_id,
            case.opened_at,
        ).clock

    def _local(self, case: Case, moment: datetime) -> str:
        local = moment.astimezone(self._router.site_zone(case.site_id))
        return local.isoformat(timespec="minutes")


def _missed_by(moment: datetime) -> ColumnElement[bool]:
    """A deadline the case still owes had passed by ``moment``."""
    return or_(
        and_(Case.acknowledged_at.is_(None), Case.ack_due_at <= moment),
        Case.sla_due_at <= moment,
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
