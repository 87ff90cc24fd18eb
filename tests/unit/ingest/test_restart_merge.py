"""A gateway that restarts (or loses its disk) forgets its open violations: the object still
standing gets a new violation id. Ingest continues the open case of that camera, zone and spot
instead of opening a second one. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import select

from contracts.events import BoundingBox, Phase, ViolationEvent
from ingest.config import IngestSettings
from storage.database import SessionFactory
from storage.tables import Case
from tests.factories import T0
from tests.unit.ingest.helpers import (
    NORTH_CAMERA,
    OTHER_PLATE,
    PLATE,
    ZONE,
    camera_factory,
    make_rig,
    with_plate,
)

WINDOW = timedelta(seconds=600)
MINUTE = timedelta(minutes=1)
RESTARTED = T0 + timedelta(minutes=3)  # the new clock's start: after the old case's last sight
FAR_BOX = BoundingBox(x1=300, y1=20, x2=350, y2=70)  # the factory's box is (10, 20, 60, 70)


def _restarted(event: ViolationEvent, started_at: datetime = RESTARTED) -> ViolationEvent:
    """The edge's first violation after a restart: its clock started when it came back."""
    return event.model_copy(update={"started_at": started_at})


def _moved(event: ViolationEvent, box: BoundingBox) -> ViolationEvent:
    assert event.object is not None
    return event.model_copy(update={"object": event.object.model_copy(update={"box": box})})


def _case_ids(sessions: SessionFactory) -> list[list[UUID]]:
    with sessions() as session:
        return [case.violation_ids for case in session.scalars(select(Case).order_by(Case.id))]


def test_a_violation_still_standing_after_an_edge_restart_continues_its_case(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_rig(session_factory, tmp_path / "evidence", settings=IngestSettings())
    north = camera_factory(NORTH_CAMERA, 1)
    before = north.event(zone_id=ZONE, at=T0)
    rig.service.store(before)
    rig.service.store(north.event(Phase.UPDATED, before.violation_id, ZONE, at=T0 + MINUTE))
    # A box a few pixels off: a parked car's detection jitters from frame to frame.
    after = _restarted(north.event(zone_id=ZONE, at=RESTARTED + timedelta(seconds=300)))
    after = _moved(after, BoundingBox(x1=13, y1=22, x2=62, y2=71))
    rig.service.store(after)
    rig.service.store(north.event(Phase.CLEARED, after.violation_id, ZONE, at=RESTARTED + WINDOW))

    assert _case_ids(session_factory) == [[before.violation_id, after.violation_id]]
    with session_factory() as session:
        case = session.scalars(select(Case)).one()
        reasons = [t.reason for t in case.transitions]
        assert case.cleared_at is not None
    assert f"merged violation {after.violation_id} from camera {NORTH_CAMERA} (same spot)" in (
        reasons
    )
    assert rig.metrics.value("civicwatch_ingest_violations_merged_total") == 1
    assert rig.metrics.value("civicwatch_ingest_cases_opened_total") == 1


@pytest.mark.parametrize(
    "why",
    [
        "another spot",
        "after the merge window",
        "the first one cleared",
        "both seen at once",
        "plates differ",
    ],
)
def test_a_new_violation_opens_its_own_case_unless_it_continues_one(
    why: str, session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_rig(session_factory, tmp_path / "evidence", settings=IngestSettings())
    north = camera_factory(NORTH_CAMERA, 1)
    before = north.event(zone_id=ZONE, at=T0)
    after = _restarted(north.event(zone_id=ZONE, at=RESTARTED + timedelta(seconds=30)))
    if why == "another spot":
        after = _moved(after, FAR_BOX)
    elif why == "after the merge window":
        late = T0 + WINDOW + timedelta(seconds=1)
        after = _restarted(north.event(zone_id=ZONE, at=late + timedelta(seconds=30)), late)
    elif why == "the first one cleared":
        rig.service.store(before)
        before = north.event(Phase.CLEARED, before.violation_id, ZONE, at=T0 + MINUTE)
    elif why == "both seen at once":  # the edge tracked both: its old one was seen after
        after = _restarted(after, T0 - timedelta(seconds=1))
    elif why == "plates differ":
        before, after = with_plate(before, PLATE), with_plate(after, OTHER_PLATE)
    rig.service.store(before)
    rig.service.store(after)

    assert len(_case_ids(session_factory)) == 2, why
    assert rig.metrics.value("civicwatch_ingest_violations_merged_total") == 0
