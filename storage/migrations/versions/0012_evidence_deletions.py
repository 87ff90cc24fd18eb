"""Evidence deletions: the images whose rows the retention job removed, until their bytes go.

The retention job (storage/evidence_retention.py) removes a closed case's evidence rows and
names each image no row names any more here, in one transaction; then it deletes the bytes
from the evidence store (a file, a PostgreSQL blob, a readable copy) and the name from this
table. A crash between the two leaves a name here, so the next run deletes those bytes: no
row ever names bytes that are gone, and no bytes are kept for good once their rows are gone.
Packed images (their records in a pack) are reclaimed by compact_packs and collect_packs.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "evidence_deletions",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_evidence_deletions")),
    )


def downgrade() -> None:
    op.drop_table("evidence_deletions")
