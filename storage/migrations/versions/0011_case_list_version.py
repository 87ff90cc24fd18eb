"""The case lists' count version: one row that every change to the cases' counted columns bumps,
in the transaction that makes it, so an API process may keep an exact count of a list
(``X-Total-Count``) until the next such change (dispatch/case_counts.py).

``case_list_version`` holds one row (id 1). Triggers on ``cases`` add one to its ``version``
when a case is inserted or deleted, or when one of the columns a cached count filters on
changes (COUNTED below: the list filters state, kind, department, site, camera, tier,
priority, assignee and overdue, and who sees a case: department, site, tier).

- PostgreSQL: deferred constraint triggers, so the version row is locked at commit, after every
  other row the transaction locks (no lock-order cycle with the cases' rows), and once per
  transaction (a transaction-local setting says it is done). A truncate bumps it too.
- SQLite: plain AFTER triggers (one writer at a time). SQLite's batch mode drops a table's
  triggers when it rebuilds the table: a later migration that batch-alters ``cases`` must make
  these again (``create_triggers``), as 0005 and 0006 do their expression indexes.

docs/benchmarks.md, "Exact counts kept between case changes".

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None

# dispatch.case_counts.COUNTED_COLUMNS as this revision knows them (a later change is a new one).
COUNTED = (
    "state",
    "kind",
    "department",
    "site_id",
    "camera_id",
    "tier",
    "priority",
    "assignee",
    "overdue",
)
_BUMP = "UPDATE case_list_version SET version = version + 1 WHERE id = 1"
_PG_FUNCTION = f"""
CREATE FUNCTION civicwatch_bump_case_list_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('civicwatch.case_list_bumped', true) IS DISTINCT FROM 'on' THEN
        {_BUMP};
        PERFORM set_config('civicwatch.case_list_bumped', 'on', true);
    END IF;
    RETURN NULL;
END
$$
"""
_CHANGED = " OR ".join(f"OLD.{name} IS DISTINCT FROM NEW.{name}" for name in COUNTED)
_SQLITE_CHANGED = " OR ".join(f"OLD.{name} IS NOT NEW.{name}" for name in COUNTED)


def create_triggers() -> None:
    """The triggers on ``cases`` (also for a later migration that rebuilds it on SQLite)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE CONSTRAINT TRIGGER cases_list_version_rows AFTER INSERT OR DELETE ON cases "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            "EXECUTE FUNCTION civicwatch_bump_case_list_version()"
        )
        op.execute(
            "CREATE CONSTRAINT TRIGGER cases_list_version_columns AFTER UPDATE ON cases "
            f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN ({_CHANGED}) "
            "EXECUTE FUNCTION civicwatch_bump_case_list_version()"
        )
        op.execute(
            "CREATE TRIGGER cases_list_version_truncate AFTER TRUNCATE ON cases "
            "FOR EACH STATEMENT EXECUTE FUNCTION civicwatch_bump_case_list_version()"
        )
        return
    for event in ("INSERT", "DELETE"):
        op.execute(
            f"CREATE TRIGGER cases_list_version_{event.lower()} AFTER {event} ON cases "
            f"BEGIN {_BUMP}; END"
        )
    op.execute(
        f"CREATE TRIGGER cases_list_version_columns AFTER UPDATE OF {', '.join(COUNTED)} "
        f"ON cases WHEN {_SQLITE_CHANGED} BEGIN {_BUMP}; END"
    )


def upgrade() -> None:
    op.create_table(
        "case_list_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO case_list_version (id, version) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
    create_triggers()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in ("rows", "columns", "truncate"):
            op.execute(f"DROP TRIGGER IF EXISTS cases_list_version_{name} ON cases")
        op.execute("DROP FUNCTION IF EXISTS civicwatch_bump_case_list_version()")
    else:
        for name in ("insert", "delete", "columns"):
            op.execute(f"DROP TRIGGER IF EXISTS cases_list_version_{name}")
    op.drop_table("case_list_version")
