"""PostgreSQL: a batch holds an advisory lock on every plate, location and spot its new
violations are matched by, for the whole transaction (two workers never match one incident
at once), however many keys the batch has."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import text

from contracts.events import ViolationEvent
from dispatch.config import RoutingSettings
from dispatch.routing import Router
from ingest.validation import zone_of_camera
from ingest.writer.incidents import _lock_key
from storage.database import SessionFactory, make_engine
from storage.routing import OpenedCase, RouteDecision
from storage.tables import Case
from tests.factories import EventFactory, make_ingest
from tests.unit.ingest.helpers import with_plate

_HELD = text(
    "SELECT classid::bigint, objid::bigint FROM pg_locks "
    "WHERE locktype = 'advisory' AND objsubid = 1 AND granted AND pid <> pg_backend_pid() "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def _signed(classid: int, objid: int) -> int:
    """pg_locks shows a bigint key as its high and low 32 bits."""
    return int.from_bytes(((classid << 32) | objid).to_bytes(8, "big"), "big", signed=True)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_every_incident_key_is_locked_while_the_batch_routes(
    database_url: str, session_factory: SessionFactory, tmp_path: Path
) -> None:
    watcher = make_engine(database_url)
    held: list[set[int]] = []
    router = Router(RoutingSettings())

    def route_and_look(cases: Sequence[OpenedCase]) -> list[RouteDecision]:
        # Runs inside the batch's transaction, after the locks were taken.
        with watcher.connect() as conn:
            held.append({_signed(classid, objid) for classid, objid in conn.execute(_HELD)})
        return router.dispatch_new_cases(cases)

    rig = make_ingest(session_factory, tmp_path / "evidence", route_cases=route_and_look)
    edge = EventFactory()
    events: list[ViolationEvent] = [
        with_plate(edge.event(), f"浙A{number:05d}") for number in range(40)
    ]
    try:
        rig.service.store_batch(events)
    finally:
        watcher.dispose()
    expected = set()
    for event in events:
        zone = zone_of_camera(rig.registry, event)
        assert event.plate is not None
        expected.add(_lock_key(f"plate|{event.site_id}|{event.plate.text}"))
        expected.add(_lock_key(f"spot|{event.camera_id}|{event.zone_id}"))
        if zone.location is not None:
            expected.add(_lock_key(f"location|{event.site_id}|{zone.location}"))
    assert len(expected) > 40
    assert held == [expected]
    with session_factory() as session:  # released at commit: nothing held after
        assert session.execute(_HELD).all() == []
        assert session.query(Case).count() >= 1
