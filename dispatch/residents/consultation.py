"""小事协商: the consultation between the residents' council and property management on a
community-tier case (opened by the intake, or by a resident's request for mediation)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy.orm import Session

from storage.tables import Case, Consultation


class ConsultationState(StrEnum):
    OPEN = "open"
    AGREED = "agreed"
    ESCALATED = "escalated"


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
