"""Near-duplicate index: LSH band buckets per dataset, signatures on documents.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 00:34:29.756062
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "minhash_band",
        sa.Column("dataset_id", sa.Uuid(), nullable=False),
        sa.Column("band_key", sa.BigInteger(), nullable=False),
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["dataset.id"],
            name=op.f("fk_minhash_band_dataset_id_dataset"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "dataset_id", "band_key", "document_id", name=op.f("pk_minhash_band")
        ),
    )
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dedup_algorithm", sa.String(length=100), nullable=True))

    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.add_column(sa.Column("minhash", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.drop_column("minhash")

    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.drop_column("dedup_algorithm")

    op.drop_table("minhash_band")
