"""The batch writer's set-based statements store exactly what the rows say, on both backends.

On PostgreSQL the rows travel as one JSON document (json_populate_recordset); a value JSON
cannot carry as PostgreSQL would read it (NaN) makes the statement use one array per column
instead. Either way the stored rows read back equal to the ones handed in.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select

from contracts.events import Phase
from ingest.writer.sql import bulk_insert, bulk_update, uuid_in
from storage.database import SessionFactory
from storage.tables import Event


def _event_row(number: int, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "message_id": uuid.uuid4(),
        "violation_id": uuid.uuid4(),
        "camera_id": f"cam-{number}",
        "site_id": "site-1",
        "gateway_id": "gw-1",
        "sequence": 2**40 + number,  # a bigint
        "phase": "opened",
        "kind": "illegal_parking",
        "zone_id": "kerb",
        # another offset than UTC: stored as the same instant
        "observed_at": datetime(2026, 5, 4, 8, 0, number, tzinfo=timezone(timedelta(hours=8))),
        "received_at": datetime(2026, 5, 4, 0, 0, number, 123456, tzinfo=UTC),
        "historical": number % 2 == 0,
        "payload": {"text": 'quote " backslash \\ 浙A', "nested": [1, 2.5, None, True]},
        "plate_text": None if number % 2 else f"浙A{number:05d}",
        "plate_confidence": 0.9 if number % 2 == 0 else None,
        "blocked_share": 0.25,
    }
    row.update(changes)
    return row


def _stored(session_factory: SessionFactory) -> dict[uuid.UUID, dict[str, Any]]:
    with session_factory() as session:
        return {
            event.message_id: {
                column.name: getattr(event, column.name) for column in Event.__table__.columns
            }
            for event in session.scalars(select(Event))
        }


@pytest.mark.parametrize("blocked", [0.25, math.nan], ids=["json", "nan-arrays"])
def test_inserted_rows_read_back_as_given(session_factory: SessionFactory, blocked: float) -> None:
    rows = [_event_row(n) for n in range(5)]
    rows[3]["blocked_share"] = blocked
    with session_factory.begin() as session:
        inserted = bulk_insert(
            session, Event, rows, on_conflict=["message_id"], returning=["message_id"]
        )
        again = bulk_insert(  # the same ids: nothing inserted, nothing returned
            session, Event, rows[:2], on_conflict=["message_id"], returning=["message_id"]
        )
    assert {row.message_id for row in inserted} == {row["message_id"] for row in rows}
    assert again == []
    stored = _stored(session_factory)
    sqlite = session_factory.kw["bind"].dialect.name == "sqlite"
    for row in rows:
        got = stored[row["message_id"]]
        for name, value in row.items():
            if isinstance(value, float) and math.isnan(value):
                # SQLite itself stores NaN as NULL: only PostgreSQL keeps it
                assert got[name] is None if sqlite else math.isnan(got[name])
            else:
                assert got[name] == value, name


def test_updated_rows_read_back_as_given(session_factory: SessionFactory) -> None:
    rows = [_event_row(n) for n in range(4)]
    with session_factory.begin() as session:
        bulk_insert(session, Event, rows)
    later = datetime(2026, 6, 1, 12, 30, tzinfo=UTC)
    changes = [
        {
            "message_id": row["message_id"],
            "phase": Phase.CLEARED,  # an enum: stored as its value
            "received_at": later,
            "plate_text": "浙B12345",
            "payload": {"changed": number},
        }
        for number, row in enumerate(rows[:3])
    ]
    with session_factory.begin() as session:
        bulk_update(session, Event, key="message_id", rows=changes)
    stored = _stored(session_factory)
    for number, row in enumerate(rows):
        got = stored[row["message_id"]]
        if number < 3:
            assert (got["phase"], got["received_at"], got["plate_text"], got["payload"]) == (
                "cleared",
                later,
                "浙B12345",
                {"changed": number},
            )
        else:
            assert got == row


def test_uuid_in_selects_exactly_the_rows_named(session_factory: SessionFactory) -> None:
    """uuid_in is the IN list it replaces: the rows named, none else, an empty list none; on
    PostgreSQL the ids travel as one parameter, however many there are."""
    rows = [_event_row(n) for n in range(6)]
    with session_factory.begin() as session:
        bulk_insert(session, Event, rows)
    ids = [row["message_id"] for row in rows]
    with session_factory() as session:
        postgres = session.get_bind().dialect.name == "postgresql"

        def found(wanted: object) -> set[uuid.UUID]:
            condition = uuid_in(Event.message_id, wanted, postgres)  # type: ignore[arg-type]
            return set(session.scalars(select(Event.message_id).where(condition)))

        assert found(ids[1:4]) == set(ids[1:4])
        assert found({ids[0], uuid.uuid4()}) == {ids[0]}  # a set, an unknown id
        assert found(row_id for row_id in ids[4:]) == set(ids[4:])  # any iterable
        assert found([]) == set()
        many = [uuid.uuid4() for _ in range(1000)] + [ids[5]]
        assert found(many) == {ids[5]}
        if postgres:  # one parameter and a short statement, not a placeholder per id
            statement = select(Event.message_id).where(uuid_in(Event.message_id, many, True))
            compiled = statement.compile(
                dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True}
            )
            assert len(compiled.params) == 1
            assert len(str(compiled)) < 300
