"""No merge by plate and no repeat-offender link rests on a reading below the plate floor.

Runs on SQLite and PostgreSQL (the ``session_factory`` fixture), through ingest as the server
wires it; the floor is ``IngestSettings.plate_confidence_floor`` (the server copies it from
``server.exemptions.plate_confidence_floor``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from contracts.events import PlateReading
from contracts.exemptions import DEFAULT_PLATE_CONFIDENCE_FLOOR, decidable_plate
from ingest.config import IngestSettings
from storage.database import SessionFactory
from storage.tables import Case, CaseState
from tests.factories import T0
from tests.unit.ingest.helpers import (
    NORTH_CAMERA,
    PLATE,
    YARD_CAMERA,
    YARD_ZONE,
    ZONE,
    camera_factory,
    make_rig,
    with_plate,
)

FLOOR = 0.9
WEAK = 0.6  # below FLOOR
SURE = 0.95


def _cases(sessions: SessionFactory) -> list[Case]:
    with sessions() as session:
        cases = list(session.scalars(select(Case).order_by(Case.id)))
        for case in cases:
            _ = (case.violation_ids, case.related_case_ids)
        return cases


def test_decidable_plate_is_none_below_the_floor() -> None:
    assert decidable_plate(None, 0.5) is None
    assert decidable_plate(PlateReading(text=PLATE, confidence=0.89), 0.9) is None
    assert decidable_plate(PlateReading(text=PLATE, confidence=0.9), 0.9) == PLATE
    assert IngestSettings().plate_confidence_floor == DEFAULT_PLATE_CONFIDENCE_FLOOR


def test_a_weak_reading_does_not_merge_two_cameras_by_plate(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_rig(
        session_factory,
        tmp_path / "evidence",
        settings=IngestSettings(plate_confidence_floor=FLOOR),
    )
    north, yard = camera_factory(NORTH_CAMERA, 1), camera_factory(YARD_CAMERA, 100)
    rig.service.store(with_plate(north.event(zone_id=ZONE, at=T0), PLATE, SURE))
    later = T0 + timedelta(minutes=2)
    rig.service.store(with_plate(yard.event(zone_id=YARD_ZONE, at=later), PLATE, WEAK))
    assert len(_cases(session_factory)) == 2  # the weak reading decides nothing

    # The same plate read surely by the yard camera does merge (the rule can pass, too).
    rig.service.store(with_plate(yard.event(zone_id=YARD_ZONE, at=later), PLATE, SURE))
    cases = _cases(session_factory)
    assert len(cases) == 2
    assert len(cases[0].violation_ids) == 2


def test_a_weak_reading_is_no_repeat_offender_link(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_rig(
        session_factory,
        tmp_path / "evidence",
        settings=IngestSettings(plate_confidence_floor=FLOOR),
    )
    north = camera_factory(NORTH_CAMERA, 1)
    rig.service.store(with_plate(north.event(zone_id=ZONE, at=T0), PLATE, SURE))
    with session_factory.begin() as session:
        session.scalars(select(Case)).one().state = CaseState.CLOSED
    tomorrow = T0 + timedelta(days=1)
    rig.service.store(with_plate(north.event(zone_id=ZONE, at=tomorrow), PLATE, WEAK))
    earlier, weak = _cases(session_factory)
    assert weak.related_case_ids == []
    assert earlier.related_case_ids == []

    with session_factory.begin() as session:
        session.get(Case, weak.id).state = CaseState.CLOSED  # type: ignore[union-attr]
    rig.service.store(with_plate(north.event(zone_id=ZONE, at=tomorrow), PLATE, SURE))
    earlier, weak, sure = _cases(session_factory)
    assert sure.related_case_ids == [earlier.id]  # only the sure earlier reading
    assert weak.related_case_ids == []
