"""Residents in the loop: their reports and photos, consultations (小事协商) with posts and votes,
guidance replies (私事自治), report limits, Open311 integration keys; cases know their source and
council members their site.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "guidance_templates",
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("body_zh", sa.Text(), nullable=False),
        sa.Column("body_en", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("category", name=op.f("pk_guidance_templates")),
    )
    op.create_table(
        "integration_keys",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_integration_keys")),
        sa.UniqueConstraint("key_sha256", name=op.f("uq_integration_keys_key_sha256")),
    )
    op.create_table(
        "report_limit_hits",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key_kind", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_limit_hits")),
    )
    with op.batch_alter_table("report_limit_hits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_report_limit_hits_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_report_limit_hits_key"), ["key"], unique=False)

    op.create_table(
        "consultations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("quorum", sa.Integer(), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_consultations_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consultations")),
        sa.UniqueConstraint("case_id", name=op.f("uq_consultations_case_id")),
    )
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consultations_deadline_at"), ["deadline_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_consultations_site_id"), ["site_id"], unique=False)

    op.create_table(
        "resident_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tracking_code", sa.String(length=16), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("joined", sa.Boolean(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("building", sa.String(length=64), nullable=True),
        sa.Column("unit", sa.String(length=64), nullable=True),
        sa.Column("plan_x", sa.Float(), nullable=True),
        sa.Column("plan_y", sa.Float(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("long", sa.Float(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("contact_consent", sa.Boolean(), nullable=False),
        sa.Column("submitted_by", sa.String(length=64), nullable=True),
        sa.Column("token_id", sa.String(length=64), nullable=True),
        sa.Column("client_address", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rating", sa.String(length=16), nullable=True),
        sa.Column("rating_comment", sa.Text(), nullable=False),
        sa.Column("rated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_resident_reports_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resident_reports")),
        sa.UniqueConstraint("tracking_code", name=op.f("uq_resident_reports_tracking_code")),
    )
    with op.batch_alter_table("resident_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resident_reports_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_resident_reports_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_resident_reports_site_id"), ["site_id"], unique=False)

    op.create_table(
        "consultation_posts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("consultation_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_consultation_posts_consultation_id_consultations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consultation_posts")),
    )
    with op.batch_alter_table("consultation_posts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consultation_posts_consultation_id"), ["consultation_id"], unique=False
        )

    op.create_table(
        "report_photos",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["resident_reports.id"],
            name=op.f("fk_report_photos_report_id_resident_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_photos")),
    )
    with op.batch_alter_table("report_photos", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_report_photos_report_id"), ["report_id"], unique=False)

    op.create_table(
        "consultation_votes",
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column("voter", sa.String(length=64), nullable=False),
        sa.Column("choice", sa.String(length=8), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            ["consultation_posts.id"],
            name=op.f("fk_consultation_votes_proposal_id_consultation_posts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("proposal_id", "voter", name=op.f("pk_consultation_votes")),
    )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=16), server_default="camera", nullable=False)
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("site_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("site_id")

    _drop_expression_indexes()
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("source")
    _create_expression_indexes()

    op.drop_table("consultation_votes")
    with op.batch_alter_table("report_photos", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_photos_report_id"))

    op.drop_table("report_photos")
    with op.batch_alter_table("consultation_posts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consultation_posts_consultation_id"))

    op.drop_table("consultation_posts")
    with op.batch_alter_table("resident_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resident_reports_site_id"))
        batch_op.drop_index(batch_op.f("ix_resident_reports_created_at"))
        batch_op.drop_index(batch_op.f("ix_resident_reports_case_id"))

    op.drop_table("resident_reports")
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consultations_site_id"))
        batch_op.drop_index(batch_op.f("ix_consultations_deadline_at"))

    op.drop_table("consultations")
    with op.batch_alter_table("report_limit_hits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_limit_hits_key"))
        batch_op.drop_index(batch_op.f("ix_report_limit_hits_at"))

    op.drop_table("report_limit_hits")
    op.drop_table("integration_keys")
    op.drop_table("guidance_templates")


# The console's expression indexes on cases (storage.tables.CONSOLE_INDEXES): SQLite's batch
# mode rebuilds the table to drop a column and cannot carry them over, so they are dropped
# before and made again after, on every backend alike.
_DUE_ORDER: list[str | sa.TextClause] = [sa.text("(sla_due_at IS NULL)"), "sla_due_at", "id"]
_EXPRESSION_INDEXES: dict[str, list[str | sa.TextClause]] = {
    "ix_cases_due_order": _DUE_ORDER,
    "ix_cases_department_due": ["department", *_DUE_ORDER],
    "ix_cases_state_due": ["state", *_DUE_ORDER],
}


def _drop_expression_indexes() -> None:
    for name in _EXPRESSION_INDEXES:
        op.drop_index(name, table_name="cases")


def _create_expression_indexes() -> None:
    for name, columns in _EXPRESSION_INDEXES.items():
        op.create_index(name, "cases", columns, unique=False)
