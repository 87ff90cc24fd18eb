"""The SLA sweep: flag open cases whose due time has passed."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import update

from ingest.database import SessionFactory
from ingest.tables import OPEN_STATES, Case

log = logging.getLogger(__name__)


def sweep_overdue(session_factory: SessionFactory, now: datetime) -> int:
    """Mark open cases past their SLA as overdue; returns how many were newly marked."""
    with session_factory.begin() as session:
        result = session.execute(
            update(Case)
            .where(
                Case.state.in_(OPEN_STATES),
                Case.sla_due_at < now,
                Case.overdue.is_(False),
            )
            .values(overdue=True, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    marked = int(getattr(result, "rowcount", 0) or 0)
    if marked:
        log.warning("%d case(s) passed their SLA", marked)
    return marked
