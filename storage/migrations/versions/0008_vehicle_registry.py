"""The residents' vehicle registry (issue 13 point 5): residents', family and service plates with
their owner's name and phone, one plate once per site; changes go on the exemption audit chain.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "registry_vehicles",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("plate", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("building", sa.String(length=32), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("owner_name", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_vehicles")),
        sa.UniqueConstraint("site_id", "plate", name=op.f("uq_registry_vehicles_site_id")),
    )
    with op.batch_alter_table("registry_vehicles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_registry_vehicles_plate"), ["plate"], unique=False)
        batch_op.create_index(batch_op.f("ix_registry_vehicles_site_id"), ["site_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("registry_vehicles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_registry_vehicles_site_id"))
        batch_op.drop_index(batch_op.f("ix_registry_vehicles_plate"))
    op.drop_table("registry_vehicles")
