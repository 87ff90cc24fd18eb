"""Two indexes for the case lists at 100,000 cases: one department's cases in one state, and the
open cases (the SLA board), each walked in deadline order.

- ``ix_cases_department_state_due``: a list asked for one department's cases in one state (the
  console's and a department's common filter) had an index for either column but not both, so
  PostgreSQL walked the deadline order and threw away the other cases (40,000 of them for a page
  at offset 1,000), and counted by ANDing two bitmaps. Now the count reads one range of this
  index and a page is a walk of it, skipped offset rows included.
- ``ix_cases_open_due``: the SLA board (open cases, nearest deadline first) walked the deadline
  order from the oldest deadline on, past every closed case first (about 38,000). This index
  holds the open cases alone (a partial index: ``state`` in storage.tables.OPEN_STATES).

docs/benchmarks.md, "The case lists' indexes at 100,000 cases".

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

# storage.tables.CONSOLE_INDEXES: the same expressions as ix_cases_due_order's. SQLite's batch
# mode drops expression indexes when it rebuilds cases: a later migration that batch-alters
# cases drops and makes these again, as 0005 and 0006 do theirs.
_DUE_ORDER: list[str | sa.TextClause] = [sa.text("(sla_due_at IS NULL)"), "sla_due_at", "id"]
# storage.tables.OPEN_STATES as this revision knows them (a later change makes a new index).
_OPEN = sa.text("state IN ('new', 'dispatched', 'accepted', 'returned')")


def upgrade() -> None:
    op.create_index("ix_cases_department_state_due", "cases", ["department", "state", *_DUE_ORDER])
    op.create_index(
        "ix_cases_open_due", "cases", _DUE_ORDER, postgresql_where=_OPEN, sqlite_where=_OPEN
    )


def downgrade() -> None:
    op.drop_index("ix_cases_open_due", table_name="cases")
    op.drop_index("ix_cases_department_state_due", table_name="cases")
