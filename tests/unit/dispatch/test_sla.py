from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from dispatch.sla import sweep_overdue
from dispatch.workflow import Action, apply_action
from ingest.database import SessionFactory
from ingest.tables import Case
from tests.factories import EventFactory, make_ingest


def test_sweep_flags_open_cases_past_their_sla_once(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    service = make_ingest(session_factory, tmp_path / "evidence").service
    edge = EventFactory()
    for _ in range(3):
        service.store(edge.event())
    with session_factory.begin() as session:
        cases = session.scalars(select(Case).order_by(Case.id)).all()
        due = cases[0].sla_due_at
        assert due is not None
        apply_action(session, cases[2], Action.ACCEPT, "officer")
        apply_action(session, cases[2], Action.RESOLVE, "officer", "done")  # no longer open

    assert sweep_overdue(session_factory, due - timedelta(minutes=1)) == 0
    later = due + timedelta(hours=1)
    assert sweep_overdue(session_factory, later) == 2
    assert sweep_overdue(session_factory, later) == 0  # already flagged
    with session_factory() as session:
        flags = list(session.scalars(select(Case.overdue).order_by(Case.id)))
    assert flags == [True, True, False]
