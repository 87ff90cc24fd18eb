"""Exemption rules (issue 13): rules and permits, each gateway's rule-document version, and the
hash-chained audit of every change to them; the rule version each gateway reports.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "exemption_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exemption_audit")),
        sa.UniqueConstraint("seq", name=op.f("uq_exemption_audit_seq")),
    )
    with op.batch_alter_table("exemption_audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_exemption_audit_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_exemption_audit_rule_id"), ["rule_id"], unique=False)

    op.create_table(
        "exemption_rules",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("zone_id", sa.String(length=64), nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("plate", sa.String(length=16), nullable=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_by", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exemption_rules")),
    )
    with op.batch_alter_table("exemption_rules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_exemption_rules_plate"), ["plate"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_exemption_rules_revoked_at"), ["revoked_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_exemption_rules_site_id"), ["site_id"], unique=False)

    op.create_table(
        "rule_document_versions",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("gateway_id", name=op.f("pk_rule_document_versions")),
    )

    with op.batch_alter_table("gateway_status", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rules_version", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_status", schema=None) as batch_op:
        batch_op.drop_column("rules_version")
    op.drop_table("rule_document_versions")
    with op.batch_alter_table("exemption_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exemption_rules_site_id"))
        batch_op.drop_index(batch_op.f("ix_exemption_rules_revoked_at"))
        batch_op.drop_index(batch_op.f("ix_exemption_rules_plate"))

    op.drop_table("exemption_rules")
    with op.batch_alter_table("exemption_audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exemption_audit_rule_id"))
        batch_op.drop_index(batch_op.f("ix_exemption_audit_at"))

    op.drop_table("exemption_audit")
