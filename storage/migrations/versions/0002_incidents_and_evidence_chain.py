"""Incidents, plates, evidence chain, redacted copies, sequence gaps and camera problems.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # batch_alter_table: SQLite alters by copying the table, PostgreSQL by plain ALTERs.
    with op.batch_alter_table("events") as batch:
        # The contract allows any sequence a BIGINT holds.
        batch.alter_column("sequence", type_=sa.BigInteger(), existing_type=sa.Integer())
        batch.add_column(sa.Column("plate_text", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("plate_confidence", sa.Float(), nullable=True))
        batch.add_column(sa.Column("blocked_share", sa.Float(), nullable=True))

    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("location", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("plate_text", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("plate_confidence", sa.Float(), nullable=True))
        batch.add_column(sa.Column("plate_votes", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("blocked_share", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("chain_broken", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.create_index(op.f("ix_cases_plate_text"), ["plate_text"], unique=False)

    with op.batch_alter_table("case_evidence") as batch:
        batch.add_column(sa.Column("violation_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("sequence", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("position", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("chain_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("redacted_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("faces_blurred", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_case_evidence_redacted_sha256_evidence"),
            "evidence",
            ["redacted_sha256"],
            ["sha256"],
        )
        batch.create_index(op.f("ix_case_evidence_violation_id"), ["violation_id"], unique=False)

    with op.batch_alter_table("camera_status") as batch:
        batch.add_column(
            sa.Column("problems", sa.JSON(), server_default=sa.text("'[]'"), nullable=False)
        )
        batch.add_column(
            sa.Column(
                "detection_path",
                sa.String(length=32),
                server_default="detector",
                nullable=False,
            )
        )

    op.create_table(
        "case_violations",
        sa.Column("violation_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("zone_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("chain_broken", sa.Boolean(), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_case_violations_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("violation_id", name=op.f("pk_case_violations")),
    )
    op.create_index(
        op.f("ix_case_violations_case_id"), "case_violations", ["case_id"], unique=False
    )
    # Every existing case is its first violation's incident.
    op.execute(
        "INSERT INTO case_violations "
        "(violation_id, case_id, camera_id, zone_id, reason, chain_broken, linked_at) "
        "SELECT violation_id, id, camera_id, zone_id, 'origin', false, created_at FROM cases"
    )

    op.create_table(
        "case_links",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("related_case_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_links_case_id_cases"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["related_case_id"],
            ["cases.id"],
            name=op.f("fk_case_links_related_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("case_id", "related_case_id", name=op.f("pk_case_links")),
    )
    op.create_index(
        op.f("ix_case_links_related_case_id"), "case_links", ["related_case_id"], unique=False
    )

    op.create_table(
        "camera_sequences",
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("highest", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("camera_id", name=op.f("pk_camera_sequences")),
    )
    # Seed from what is stored so the first message after the upgrade is not a false gap.
    op.execute(
        "INSERT INTO camera_sequences (camera_id, highest) "
        "SELECT camera_id, MAX(sequence) FROM events GROUP BY camera_id"
    )
    op.create_table(
        "sequence_gaps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("first", sa.BigInteger(), nullable=False),
        sa.Column("last", sa.BigInteger(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sequence_gaps")),
    )
    op.create_index(
        op.f("ix_sequence_gaps_camera_id"), "sequence_gaps", ["camera_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_sequence_gaps_camera_id"), table_name="sequence_gaps")
    op.drop_table("sequence_gaps")
    op.drop_table("camera_sequences")
    op.drop_index(op.f("ix_case_links_related_case_id"), table_name="case_links")
    op.drop_table("case_links")
    op.drop_index(op.f("ix_case_violations_case_id"), table_name="case_violations")
    op.drop_table("case_violations")

    with op.batch_alter_table("camera_status") as batch:
        batch.drop_column("detection_path")
        batch.drop_column("problems")
    with op.batch_alter_table("case_evidence") as batch:
        batch.drop_index(op.f("ix_case_evidence_violation_id"))
        batch.drop_constraint(op.f("fk_case_evidence_redacted_sha256_evidence"), type_="foreignkey")
        batch.drop_column("faces_blurred")
        batch.drop_column("redacted_sha256")
        batch.drop_column("chain_sha256")
        batch.drop_column("position")
        batch.drop_column("sequence")
        batch.drop_column("violation_id")

    with op.batch_alter_table("cases") as batch:
        batch.drop_index(op.f("ix_cases_plate_text"))
        batch.drop_column("chain_broken")
        batch.drop_column("blocked_share")
        batch.drop_column("plate_votes")
        batch.drop_column("plate_confidence")
        batch.drop_column("plate_text")
        batch.drop_column("location")

    with op.batch_alter_table("events") as batch:
        batch.drop_column("blocked_share")
        batch.drop_column("plate_confidence")
        batch.drop_column("plate_text")
        batch.alter_column("sequence", type_=sa.Integer(), existing_type=sa.BigInteger())
