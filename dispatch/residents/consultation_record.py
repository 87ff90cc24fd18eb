"""The consultation's own records (小事协商), apart from its rules: opening one, the audit-chain
entries of its steps, and its escalation when the case leaves property management. The workflow
calls ``escalate_for_transfer``, so this module imports nothing of the workflow's
(dispatch.residents.consultation holds the rules and imports the workflow)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.audit import append_entry
from storage.tables import Case, CaseState, CaseTransition, Consultation


class ConsultationState(StrEnum):
    OPEN = "open"
    AGREED = "agreed"
    ESCALATED = "escalated"


class ConsultAction(StrEnum):
    """The audit chain's action names of the consultation's steps."""

    COMMENT = "consult_comment"
    PROPOSE = "consult_propose"
    VOTE = "consult_vote"
    AGREED = "consult_agreed"
    ESCALATED = "consult_escalated"


def open_consultation(
    session: Session, case: Case, quorum: int, deadline_at: datetime, now: datetime
) -> Consultation:
    """A consultation on ``case`` (flushed, so it has its id) at the case's site."""
    consultation = Consultation(
        case_id=case.id,
        site_id=case.site_id,
        quorum=quorum,
        deadline_at=deadline_at,
        state=ConsultationState.OPEN.value,
        outcome="",
        opened_at=now,
    )
    session.add(consultation)
    session.flush()
    return consultation


def record_step(
    session: Session,
    case: Case,
    action: ConsultAction,
    actor: str,
    reason: str,
    now: datetime,
    detail: dict[str, Any],
) -> CaseTransition:
    """One entry on the case's audit chain; the case keeps its state."""
    state = CaseState(case.state)
    transition = CaseTransition(
        case=case,
        action=action.value,
        from_state=state,
        to_state=state,
        actor=actor,
        reason=reason,
        at=now,
        detail=detail,
    )
    case.updated_at = now
    return append_entry(session, transition)


def escalate_for_transfer(
    session: Session, case: Case, now: datetime, actor: str, reason: str = ""
) -> bool:
    """``case`` left property management (the SLA sweep's community-tier transfer, or a
    dispatcher's transfer or dispatch by hand): its open consultation is escalated (大事派单).
    The workflow calls this on every such move. An agreed (or already escalated) one is left
    alone. True: escalated."""
    consultation = session.scalars(
        select(Consultation).where(Consultation.case_id == case.id)
    ).one_or_none()
    if consultation is None or consultation.state != ConsultationState.OPEN.value:
        return False
    consultation.state = ConsultationState.ESCALATED.value
    consultation.closed_at = now
    detail = {"consultation_id": consultation.id, "department": case.department}
    record_step(
        session,
        case,
        ConsultAction.ESCALATED,
        actor,
        f"consultation {consultation.id} unsettled: escalated to {case.department}"
        + (f" ({reason})" if reason else ""),
        now,
        detail,
    )
    return True
