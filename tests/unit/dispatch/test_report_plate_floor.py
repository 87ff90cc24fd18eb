"""The joint report's repeat plates (repeat offenders) never rest on a reading below the floor.

Runs on SQLite and PostgreSQL (the ``session_factory`` fixture), through count_figures.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import insert

from bench.report_seed import seed_registry
from contracts.exemptions import DEFAULT_PLATE_CONFIDENCE_FLOOR
from dispatch.reports.figures import count_figures
from dispatch.reports.period import Period, Scope, resolve_place, window
from storage.database import SessionFactory
from storage.tables import Case
from tests.unit.dispatch.test_reports import SITE, case_row, local

SURE = 0.95
WEAK = DEFAULT_PLATE_CONFIDENCE_FLOOR - 0.2


def test_repeat_plates_count_only_readings_at_or_above_the_floor(
    session_factory: SessionFactory,
) -> None:
    registry = seed_registry()
    rows = [
        case_row(1, local(4), plate_text="沪A12345", plate_confidence=SURE),
        case_row(2, local(5), plate_text="沪A12345", plate_confidence=SURE),
        case_row(3, local(6), plate_text="沪A12345", plate_confidence=WEAK),  # not counted
        case_row(4, local(4), plate_text="沪B00001", plate_confidence=WEAK),
        case_row(5, local(5), plate_text="沪B00001", plate_confidence=WEAK),  # no repeat
        case_row(6, local(6), plate_text="沪C00002", plate_confidence=None),
        case_row(7, local(7), plate_text="沪C00002", plate_confidence=None),
    ]
    with session_factory.begin() as session:
        session.execute(insert(Case), rows)
    place = resolve_place(registry, Scope.SITE, SITE)
    week = window(Period.WEEK, date(2026, 5, 4), place.zone)
    with session_factory() as session:
        figures = count_figures(session, registry, place, week)
        lenient = count_figures(session, registry, place, week, plate_confidence_floor=0.0)
    assert [(p.plate, p.case_ids) for p in figures.plates] == [("沪A12345", (1, 2))]
    assert {p.plate for p in lenient.plates} == {"沪A12345", "沪B00001"}
