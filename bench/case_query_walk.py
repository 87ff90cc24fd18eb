"""How dispatch.case_query pages 100,000 cases on PostgreSQL: timings and the plan.

    .venv/bin/python -m bench.case_query_walk [--cases 100000]

Builds a scratch database (CIVICWATCH_TEST_POSTGRES, as the tests), fills it with generated
cases in one INSERT ... SELECT, and times the first page, a page reached by cursor, a filtered
page and a search, printing the default order's plan (an index scan with no Sort node).
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from dispatch.case_query import CasePage, CaseQuery, _after, _order, conditions, decode_cursor
from dispatch.case_query import find_cases as find
from dispatch.config import Department, Role
from dispatch.workflow import Actor
from storage.database import make_engine, make_session_factory
from storage.schema import migrate
from storage.tables import Case
from tests.factories import make_registry

ADMIN_URL = os.environ.get(
    "CIVICWATCH_TEST_POSTGRES", "postgresql+psycopg://root@127.0.0.1:5432/test"
)
FILL = """
INSERT INTO cases (violation_id, kind, site_id, gateway_id, camera_id, zone_id, zone_kind, state,
  department, tier, priority, sla_due_at, overdue, started_at, opened_at, last_observed_at,
  dwell_seconds, created_at, updated_at, plate_text, chain_broken, escalation_level)
SELECT gen_random_uuid(), 'illegal_parking', 'site-a', 'gw-a1', 'cam-a1', 'gate-no-parking',
  'no_parking', (ARRAY['new','dispatched','accepted','resolved','closed'])[1 + i % 5],
  (ARRAY['law_enforcement','fire_rescue','public_security'])[1 + i % 3], 'department', 'normal',
  CASE WHEN i % 10 = 0 THEN NULL
       ELSE now() + make_interval(mins => (i * 7919) % 100000) END,
  false, now() - make_interval(secs => i), now() - make_interval(secs => i),
  now() - make_interval(secs => i), 360, now() - make_interval(secs => i), now(),
  'ZA' || lpad((i % 99999)::text, 5, '0'), false, 0
FROM generate_series(1, :cases) AS i
"""


def timed(label: str, run: Callable[[], CasePage]) -> CasePage:
    start = time.perf_counter()
    page = run()
    best = time.perf_counter() - start
    for _ in range(4):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    print(f"{label:<44} {best * 1000:7.1f} ms   {len(page.cases)} rows of {page.total}")
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    cases = parser.parse_args().cases
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"civicwatch_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        migrate(url)
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text(FILL), {"cases": cases})
            conn.execute(text("ANALYZE cases"))
        sessions = make_session_factory(engine)
        registry = make_registry()
        desk = Actor("desk", Role.DISPATCHER)
        law = Actor("officer", Role.WORKER, Department.LAW_ENFORCEMENT)
        with sessions() as session:
            first = timed(
                "dispatcher, first page of 100", lambda: find(session, desk, CaseQuery(), registry)
            )
            deep = CaseQuery(cursor=first.next_cursor)
            timed("dispatcher, next page by cursor", lambda: find(session, desk, deep, registry))
            timed(
                "law enforcement, state new+dispatched",
                lambda: find(session, law, CaseQuery(state=["new", "dispatched"]), registry),
            )
            timed("search q=ZA0042", lambda: find(session, desk, CaseQuery(q="ZA0042"), registry))
            timed("newest first", lambda: find(session, desk, CaseQuery(sort="newest"), registry))
            assert deep.cursor is not None
            statement = (
                select(Case.id)
                .where(*conditions(desk, deep, registry))
                .where(_after(deep, decode_cursor(deep, deep.cursor)))
                .order_by(*_order(deep.sort))
                .limit(101)
            )
            sql = statement.compile(engine, compile_kwargs={"literal_binds": True})
            plan = session.execute(text(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}"))
            print("\nplan of the page by cursor:")
            for (line,) in plan:
                print("  " + line)
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
