"""Evidence packs: where a small image packed by ingest is (storage/evidence_packs.py).

``evidence.pack`` names the pack file (ROOT/packs/<pack>.pack) and ``evidence.pack_offset`` is
where the image's record starts in it (its length is ``evidence.size``); both NULL for an image
kept as a file of its own (every image before this revision, every upload, every image over
``server.ingest.evidence_pack_max_bytes``). No index: rows are read by their hash, and
collecting packs no row names is a rare scan.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("evidence") as batch:
        batch.add_column(sa.Column("pack", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("pack_offset", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # Packed images would have no place left to be found by: refuse rather than lose them.
    bind = op.get_bind()
    packed = bind.execute(sa.text("SELECT count(*) FROM evidence WHERE pack IS NOT NULL"))
    if packed.scalar():
        raise RuntimeError(
            "evidence rows name packed images: unpack them to files before downgrading 0010"
        )
    with op.batch_alter_table("evidence") as batch:
        batch.drop_column("pack_offset")
        batch.drop_column("pack")
