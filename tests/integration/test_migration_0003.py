"""Migration 0003 on a database that already holds 0002 data: nothing lost, the trail chained.

Runs on SQLite and PostgreSQL; the rows are written with plain SQL as a 0002 server wrote them.
SQLite rebuilds the cases table for 0003; with foreign keys on, that would cascade-delete every
case's audit trail and evidence links, which is what this test guards.
"""

from __future__ import annotations

from uuid import uuid4

from sqlalchemy import Uuid, bindparam, text

from storage.audit import verify_chain
from storage.database import make_engine, make_session_factory
from storage.schema import upgrade_engine

NOW = "2026-05-04 08:00:00+00:00"


def test_0003_keeps_the_trail_and_chains_it(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade_engine(engine, "0002")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO cases (violation_id, kind, site_id, gateway_id, camera_id, "
                    "zone_id, zone_kind, state, overdue, started_at, opened_at, "
                    "last_observed_at, dwell_seconds, created_at, updated_at, chain_broken) "
                    "VALUES (:v, 'illegal_parking', 's', 'g', 'cam-1', 'z', 'no_parking', "
                    "'dispatched', false, :t, :t, :t, 360, :t, :t, false)"
                ).bindparams(bindparam("v", type_=Uuid)),
                {"v": uuid4(), "t": NOW},
            )
            case_id = connection.execute(text("SELECT id FROM cases")).scalar_one()
            for from_state, to_state in ((None, "new"), ("new", "dispatched")):
                connection.execute(
                    text(
                        "INSERT INTO case_transitions (case_id, from_state, to_state, actor, "
                        "reason, at) VALUES (:c, :f, :s, 'ingest', 'why', :t)"
                    ),
                    {"c": case_id, "f": from_state, "s": to_state, "t": NOW},
                )
            connection.execute(
                text(
                    "INSERT INTO evidence (sha256, content_type, size, width, height, stored_at) "
                    "VALUES (:h, 'image/jpeg', 10, 64, 48, :t)"
                ),
                {"h": "a" * 64, "t": NOW},
            )
            connection.execute(
                text(
                    "INSERT INTO case_evidence (case_id, sha256, label, captured_at, width, "
                    "height) VALUES (:c, :h, 'entry', :t, 64, 48)"
                ),
                {"c": case_id, "h": "a" * 64, "t": NOW},
            )

        upgrade_engine(engine)

        with engine.connect() as connection:
            trail = connection.execute(
                text("SELECT seq, to_state FROM case_transitions ORDER BY seq")
            ).all()
            assert [tuple(row) for row in trail] == [(1, "new"), (2, "dispatched")]
            assert connection.execute(text("SELECT count(*) FROM case_evidence")).scalar() == 1
            assert connection.execute(text("SELECT escalation_level FROM cases")).scalar() == 0
        with make_session_factory(engine)() as session:
            report = verify_chain(session)
        assert report.intact, report.problems
        assert report.entries == 2

        with engine.begin() as connection:  # an edit after the fact shows
            connection.execute(text("UPDATE case_transitions SET actor = 'someone' WHERE seq = 1"))
        with make_session_factory(engine)() as session:
            problems = verify_chain(session).problems
        assert [problem.seq for problem in problems] == [1]
    finally:
        engine.dispose()
