"""The consultation's own records (小事协商), apart from its rules: opening one, the audit-chain
entries of its steps, and how it ends when its case moves on without an agreement: escalated when
the case leaves property management, withdrawn when the case is closed or merged. The workflow
calls ``escalate_for_transfer`` and ``withdraw_for_ending``, so this module imports nothing of the
workflow's (dispatch.residents.consultation holds the rules and imports the workflow)."""

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
    WITHDRAWN = "withdrawn"  # the case was closed or merged before anything was agreed


class ConsultAction(StrEnum):
    """The audit chain's action names of the consultation's steps."""

    COMMENT = "consult_comment"
    PROPOSE = "consult_propose"
    VOTE = "consult_vote"
    AGREED = "consult_agreed"
    ESCALATED = "consult_escalated"
    WITHDRAWN = "consult_withdrawn"


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


def _open_consultation_of(session: Session, case: Case) -> Consultation | None:
    consultation = session.scalars(
        select(Consultation).where(Consultation.case_id == case.id)
    ).one_or_none()
    if consultation is None or consultation.state != ConsultationState.OPEN.value:
        return None
    return consultation


def _end(
    session: Session,
    case: Case,
    consultation: Consultation,
    state: ConsultationState,
    action: ConsultAction,
    now: datetime,
    actor: str,
    reason: str,
) -> None:
    consultation.state = state.value
    consultation.closed_at = now
    detail = {"consultation_id": consultation.id, "department": case.department}
    record_step(session, case, action, actor, reason, now, detail)


def escalate_for_transfer(
    session: Session, case: Case, now: datetime, actor: str, reason: str = ""
) -> bool:
    """``case`` left property management (the SLA sweep's community-tier transfer, or a
    dispatcher's transfer or dispatch by hand): its open consultation is escalated (大事派单).
    The workflow calls this on every such move. An agreed (or already ended) one is left
    alone. True: escalated."""
    consultation = _open_consultation_of(session, case)
    if consultation is None:
        return False
    why = f"consultation {consultation.id} unsettled: escalated to {case.department}"
    _end(
        session,
        case,
        consultation,
        ConsultationState.ESCALATED,
        ConsultAction.ESCALATED,
        now,
        actor,
        why + (f" ({reason})" if reason else ""),
    )
    return True


def withdraw_for_ending(
    session: Session, case: Case, now: datetime, actor: str, reason: str = ""
) -> bool:
    """``case`` was closed or merged into another while its consultation was still open: the
    consultation is withdrawn (nothing more may be added, its thread stays readable). The
    workflow calls this whenever a case reaches ``closed`` or ``merged``. True: withdrawn."""
    consultation = _open_consultation_of(session, case)
    if consultation is None:
        return False
    why = f"consultation {consultation.id} withdrawn: case {case.id} {case.state}"
    _end(
        session,
        case,
        consultation,
        ConsultationState.WITHDRAWN,
        ConsultAction.WITHDRAWN,
        now,
        actor,
        why + (f" ({reason})" if reason else ""),
    )
    return True
