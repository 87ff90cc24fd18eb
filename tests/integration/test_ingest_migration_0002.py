"""Migration 0002 on a database that already holds 0001 data: upgrade, downgrade, upgrade.

Runs on SQLite and PostgreSQL; the rows are written with plain SQL as a 0001 server wrote them.
"""

from __future__ import annotations

from uuid import uuid4

from sqlalchemy import Uuid, bindparam, inspect, text

from storage.database import make_engine
from storage.schema import upgrade_engine


def _migrate(database_url: str, revision: str, down: bool = False) -> None:
    engine = make_engine(database_url)
    try:
        upgrade_engine(engine, revision, downgrade=down)
    finally:
        engine.dispose()


def test_0002_keeps_old_rows_seeds_links_and_sequences_and_downgrades(database_url: str) -> None:
    _migrate(database_url, "0001")
    violation = uuid4()
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            now = "2026-05-04 08:00:00+00:00"
            connection.execute(
                text(
                    "INSERT INTO cases (violation_id, kind, site_id, gateway_id, camera_id, "
                    "zone_id, zone_kind, state, overdue, started_at, opened_at, "
                    "last_observed_at, dwell_seconds, created_at, updated_at) VALUES (:v, "
                    "'illegal_parking', 's', 'g', 'cam-1', 'z', 'no_parking', 'new', false, "
                    ":t, :t, :t, 360, :t, :t)"
                ).bindparams(bindparam("v", type_=Uuid)),
                {"v": violation, "t": now},
            )
            for sequence in (3, 7):
                connection.execute(
                    text(
                        "INSERT INTO events (message_id, violation_id, camera_id, site_id, "
                        "gateway_id, sequence, phase, kind, zone_id, observed_at, received_at, "
                        "historical, payload) VALUES (:m, :v, 'cam-1', 's', 'g', :n, 'opened', "
                        "'illegal_parking', 'z', :t, :t, false, '{}')"
                    ).bindparams(bindparam("m", type_=Uuid), bindparam("v", type_=Uuid)),
                    {"m": uuid4(), "v": violation, "n": sequence, "t": now},
                )

        _migrate(database_url, "head")
        with engine.connect() as connection:
            links = connection.execute(
                text("SELECT violation_id, reason FROM case_violations")
            ).all()
            assert [(str(v).replace("-", ""), r) for v, r in links] == [(violation.hex, "origin")]
            assert connection.execute(
                text("SELECT camera_id, highest FROM camera_sequences")
            ).all() == [("cam-1", 7)]
            assert connection.execute(text("SELECT chain_broken FROM cases")).scalar() in (
                False,
                0,
            )

        _migrate(database_url, "0001", down=True)
        tables = set(inspect(engine).get_table_names())
        assert not tables & {"case_violations", "case_links", "camera_sequences", "sequence_gaps"}
        case_columns = {column["name"] for column in inspect(engine).get_columns("cases")}
        assert "plate_text" not in case_columns
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM events")).scalar() == 2

        _migrate(database_url, "head")  # and up again
        assert "sequence_gaps" in set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
