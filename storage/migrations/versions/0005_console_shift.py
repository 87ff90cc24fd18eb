"""A console for a whole shift: case assignment, alert opt-ins, saved views, response templates,
site plans and camera placements uploaded in the console, joint analysis reports, and a log of
camera health changes (uptime).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assignee", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_cases_assignee"), ["assignee"], unique=False)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("alert_sound", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("alert_desktop", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_table(
        "saved_views",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("query", sa.String(length=2000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_saved_views_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_views")),
        sa.UniqueConstraint("user_id", "name", name=op.f("uq_saved_views_user_id")),
    )
    with op.batch_alter_table("saved_views", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_saved_views_user_id"), ["user_id"], unique=False)
    op.create_table(
        "response_templates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("department", sa.String(length=32), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_response_templates")),
        sa.UniqueConstraint("name", name=op.f("uq_response_templates_name")),
    )
    op.create_table(
        "site_plans",
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("uploaded_by", sa.String(length=64), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("site_id", name=op.f("pk_site_plans")),
    )
    op.create_table(
        "camera_placements",
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("x", sa.Float(), nullable=False),
        sa.Column("y", sa.Float(), nullable=False),
        sa.Column("placed_by", sa.String(length=64), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("camera_id", name=op.f("pk_camera_placements")),
    )
    with op.batch_alter_table("camera_placements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_camera_placements_site_id"), ["site_id"], unique=False)
    op.create_table(
        "analysis_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("scope_id", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("generated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("generated_by", sa.String(length=64), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analysis_reports")),
        sa.UniqueConstraint(
            "period",
            "scope",
            "scope_id",
            "period_start",
            "language",
            name=op.f("uq_analysis_reports_period"),
        ),
    )
    with op.batch_alter_table("analysis_reports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_analysis_reports_generated_at"), ["generated_at"], unique=False
        )
    op.create_table(
        "camera_health_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("health", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_camera_health_changes")),
    )
    with op.batch_alter_table("camera_health_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_camera_health_changes_camera_id"), ["camera_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_camera_health_changes_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("camera_health_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_camera_health_changes_at"))
        batch_op.drop_index(batch_op.f("ix_camera_health_changes_camera_id"))
    op.drop_table("camera_health_changes")
    with op.batch_alter_table("analysis_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analysis_reports_generated_at"))
    op.drop_table("analysis_reports")
    with op.batch_alter_table("camera_placements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_camera_placements_site_id"))
    op.drop_table("camera_placements")
    op.drop_table("site_plans")
    op.drop_table("response_templates")
    with op.batch_alter_table("saved_views", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_saved_views_user_id"))
    op.drop_table("saved_views")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("alert_desktop")
        batch_op.drop_column("alert_sound")
    _drop_expression_indexes()
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_assignee"))
        batch_op.drop_column("assignee")
    _create_expression_indexes()


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
