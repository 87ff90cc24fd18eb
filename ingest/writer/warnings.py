"""The warning stage on the server: a warned item waits, complied closes it, opened routes it.

A violation's warning-stage messages must come in one order: ``warned`` first (a new item in
state ``warned``: not routed, no department, its dwell-crossed frames as the "before"), then
either ``complied`` (closed as "warned, complied", close reason ``warned_complied``) or
``opened`` no earlier than the warning's ``grace_until`` (routed to its department now, the
warning time on the record, the "after" frames beside the "before"). Anything else is refused
before it is stored, with a reason the edge gets in its ack, and counted:

- ``warning_unknown``: a ``complied`` for a violation that was never warned;
- ``warning_order``: a ``warned`` for a violation already warned or opened, a ``complied``
  after an ``opened`` (or twice), anything after a ``complied``;
- ``warning_grace``: an ``opened`` of a warned violation before its grace period ended.

A resent message (same message id) is a duplicate as always, not a refusal.

A gateway can report after the server stopped waiting for it (dispatch.warning_stage's
timeout sent the item to the dispatchers, or a person acted on it first). A late ``complied``
is taken, not refused: the car left, and whoever holds the item must know before sending
anyone. An item still untouched in the dispatchers' queue (``new``) closes as "warned,
complied"; one a person already moved on gets a ``late_complied`` entry and stays as it is.
A late ``opened`` is kept as an event and routes nothing: a dispatcher has it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select

from contracts.events import Phase, ViolationEvent
from contracts.exemptions import WARNED_COMPLIED
from ingest.validation import Refusal, RefusalReason
from ingest.writer.batch import Batch, Placed
from ingest.writer.case_rows import CASES, VIOLATION_LINKS, CaseRow
from ingest.writer.sql import bulk_insert, bulk_update, uuid_in
from storage.audit import chain_entries
from storage.routing import CaseRouter
from storage.tables import Case, CaseState, CaseTransition, Event

WARNING_PHASES = (Phase.WARNED, Phase.COMPLIED)
_CHECKED = (Phase.WARNED, Phase.COMPLIED, Phase.OPENED)
_ACTOR = "ingest"
LATE_COMPLIED_ACTION = "late_complied"
COMPLIED_LATE_WHY = "complied_late"


@dataclass
class _Stage:
    """Where a violation stands in the warning stage, as the database and the batch say."""

    has_case: bool = False
    warned_until: datetime | None = None  # warned and still waiting: its grace's end
    complied: bool = False
    opened: bool = False  # enforced: routed, or never warned
    handed_over: bool = False  # warned, then moved on by the server or a person, not the gateway


def refuse_out_of_order(batch: Batch, unique: list[Placed]) -> dict[UUID, Refusal]:
    """The batch's warning-stage messages that break the order above, each with its refusal.

    Only batches with a warned, complied or opened message pay the two lookups.
    """
    checked = [item for item in unique if item.event.phase in _CHECKED]
    if not checked:
        return {}
    violations = sorted({item.event.violation_id for item in checked})
    stages = _stored_stages(batch, violations)
    stored = set(
        batch.session.scalars(
            select(Event.message_id).where(
                uuid_in(
                    Event.message_id, [item.event.message_id for item in checked], batch.postgres
                )
            )
        )
    )
    refused: dict[UUID, Refusal] = {}
    for item in sorted(unique, key=lambda placed: placed.event.sequence):
        event = item.event
        if event.message_id in stored:
            continue  # a resend: a duplicate, as always
        if event.violation_id not in stages and event.phase not in _CHECKED:
            continue
        stage = stages.setdefault(event.violation_id, _Stage())
        problem = _problem(stage, event)
        if problem is not None:
            reason, detail = problem
            refused[event.message_id] = Refusal(reason, detail, event.message_id)
            continue
        _advance(stage, event)
    return refused


def _problem(stage: _Stage, event: ViolationEvent) -> tuple[RefusalReason, str] | None:
    name = f"violation {event.violation_id}"
    if stage.complied:
        return RefusalReason.WARNING_ORDER, f"{name} already complied; {event.phase} refused"
    if event.phase is Phase.WARNED and stage.has_case:
        state = "warned" if stage.warned_until is not None else "opened"
        return RefusalReason.WARNING_ORDER, f"{name} was already {state}; warned again refused"
    if event.phase is Phase.COMPLIED:
        if not stage.has_case:
            return RefusalReason.WARNING_UNKNOWN, f"{name} was never warned"
        if stage.handed_over:
            return None  # late: taken and noted (module docstring)
        if stage.warned_until is None:
            return RefusalReason.WARNING_ORDER, f"{name} was opened; complied after it refused"
    grace = stage.warned_until
    if event.phase is Phase.OPENED and grace is not None and event.observed_at < grace:
        return (
            RefusalReason.WARNING_GRACE,
            f"{name} opened at {event.observed_at.isoformat()}, before its grace ends at "
            f"{grace.isoformat()}",
        )
    return None


def _advance(stage: _Stage, event: ViolationEvent) -> None:
    if event.phase is Phase.WARNED:
        assert event.warning is not None  # the contract requires it
        stage.warned_until = event.warning.grace_until
    elif event.phase is Phase.COMPLIED:
        stage.warned_until = None
        stage.complied = True
    elif event.phase is Phase.OPENED:
        stage.warned_until = None
        stage.opened = True
    stage.handed_over = False
    stage.has_case = True


def _stored_stages(batch: Batch, violations: list[UUID]) -> dict[UUID, _Stage]:
    session = batch.session
    case_states: dict[UUID, str] = {
        violation_id: state
        for violation_id, state in session.execute(
            select(VIOLATION_LINKS.c.violation_id, CASES.c.state)
            .join_from(VIOLATION_LINKS, CASES, VIOLATION_LINKS.c.case_id == CASES.c.id)
            .where(uuid_in(VIOLATION_LINKS.c.violation_id, violations, batch.postgres))
        )
    }
    stages = {
        violation_id: _Stage(has_case=True, opened=state != CaseState.WARNED)
        for violation_id, state in case_states.items()
    }
    warned: dict[UUID, datetime | None] = {}
    gateway_opened: set[UUID] = set()
    for violation_id, phase, payload in session.execute(
        select(Event.violation_id, Event.phase, Event.payload).where(
            uuid_in(Event.violation_id, violations, batch.postgres),
            Event.phase.in_([p.value for p in _CHECKED]),
        )
    ):
        stage = stages.setdefault(violation_id, _Stage(has_case=True))
        if phase == Phase.COMPLIED:
            stage.complied = True
        elif phase == Phase.WARNED:
            until = (payload.get("warning") or {}).get("grace_until")
            warned[violation_id] = datetime.fromisoformat(until) if until else None
        else:
            stage.opened = True
            gateway_opened.add(violation_id)
    for violation_id, until in warned.items():
        stage = stages[violation_id]
        if stage.complied or violation_id in gateway_opened:
            stage.warned_until = None
        elif case_states.get(violation_id) == CaseState.WARNED:
            stage.warned_until = until
        else:
            stage.handed_over = True
    return stages


def settle_warned_cases(
    batch: Batch, settled: list[tuple[CaseRow, ViolationEvent]], route_cases: CaseRouter
) -> None:
    """Close the warned cases whose car complied; route those still there after the grace;
    take a late ``complied`` on a case the server already handed over (module docstring).

    ``settled`` are (case, event) for every complied or opened event on a stored case (the
    order check let through only those that fit). One UPDATE and one audit INSERT.
    """
    rows: list[dict[str, Any]] = []
    transitions: list[dict[str, Any]] = []
    waiting = [(case, event) for case, event in settled if case.state == CaseState.WARNED]
    enforced = [(case, event) for case, event in waiting if event.phase is Phase.OPENED]
    decisions = route_cases([case.to_route() for case, _ in enforced]) if enforced else []
    if len(decisions) != len(enforced):
        raise RuntimeError(f"routing returned {len(decisions)} for {len(enforced)} case(s)")
    routed = {id(case): decision for (case, _), decision in zip(enforced, decisions, strict=True)}
    for case, event in settled:
        case_id = case.require_id()
        facts = _warning_facts(event)
        if event.phase is Phase.COMPLIED:
            batch.report.warnings_complied += 1
            from_state = CaseState(case.state)
            if from_state in (CaseState.WARNED, CaseState.NEW):
                # Warned and gone; or gone, reported after the item went to the dispatchers'
                # queue, where nobody has touched it yet.
                rows.append(_closed(case_id, event.observed_at))
                why = WARNED_COMPLIED if from_state is CaseState.WARNED else COMPLIED_LATE_WHY
                facts |= {"why": why, "close_reason": WARNED_COMPLIED}
                action, to_state = "close", CaseState.CLOSED
                case.state = CaseState.CLOSED
            else:  # a person moved it on: told, not undone
                facts |= {"why": COMPLIED_LATE_WHY, "left_at": event.observed_at.isoformat()}
                action, to_state = LATE_COMPLIED_ACTION, from_state
            transitions.append(
                _entry(case_id, action, from_state, to_state, "warned, complied", facts, batch.now)
            )
            continue
        decision = routed.get(id(case))
        if decision is None:
            continue  # a late "still there": kept as an event, routes nothing
        batch.report.warnings_enforced += 1
        rows.append(
            {
                "id": case_id,
                "state": CaseState.DISPATCHED.value,
                "closed_at": None,
                "department": decision.department,
                "tier": decision.tier,
                "priority": decision.priority,
                "ack_due_at": decision.ack_due_at,
                "sla_due_at": decision.sla_due_at,
                "escalate_to": decision.escalate_to,
            }
        )
        detail = {**decision.detail, **facts, "department": decision.department}
        detail["why_warned"] = "still_there_after_grace"
        entry = _entry(
            case_id,
            "dispatch",
            CaseState.WARNED,
            CaseState.DISPATCHED,
            decision.reason,
            detail,
            batch.now,
        )
        entry["actor"] = decision.actor
        transitions.append(entry)
        case.state = CaseState.DISPATCHED
    bulk_update(batch.session, Case, key="id", rows=rows)
    bulk_insert(batch.session, CaseTransition, chain_entries(batch.session, transitions))


def _warning_facts(event: ViolationEvent) -> dict[str, Any]:
    facts: dict[str, Any] = {"violation_id": str(event.violation_id)}
    if event.warning is not None:
        facts |= {
            "warned_at": event.warning.warned_at.isoformat(),
            "rule_id": event.warning.rule_id,
        }
    return facts


def _closed(case_id: int, at: datetime) -> dict[str, Any]:
    return {
        "id": case_id,
        "state": CaseState.CLOSED.value,
        "closed_at": at,
        "department": None,
        "tier": None,
        "priority": None,
        "ack_due_at": None,
        "sla_due_at": None,
        "escalate_to": None,
    }


def _entry(
    case_id: int,
    action: str,
    from_state: CaseState,
    to_state: CaseState,
    reason: str,
    detail: dict[str, Any],
    at: Any,
) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "action": action,
        "from_state": from_state.value,
        "to_state": to_state.value,
        "actor": _ACTOR,
        "reason": reason,
        "at": at,
        "detail": detail,
    }
