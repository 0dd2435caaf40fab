"""Datasets shared with other teams, read-only.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 16:27:36.218367
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models.base

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dataset_share",
        sa.Column("dataset_id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["dataset.id"],
            name=op.f("fk_dataset_share_dataset_id_dataset"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["team.id"], name=op.f("fk_dataset_share_team_id_team"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("dataset_id", "team_id", name=op.f("pk_dataset_share")),
    )
    op.create_index(op.f("ix_dataset_share_team_id"), "dataset_share", ["team_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_dataset_share_team_id"), table_name="dataset_share")
    op.drop_table("dataset_share")
