"""Documents get their place in the dataset's compacted version files.

A snapshot gives each published document it adds a position, dense per dataset and stance:
version files hold contiguous ranges of positions, so a later snapshot keeps full files as
they are and re-packs only the last, unfilled one of each stance.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.add_column(sa.Column("position", sa.BigInteger(), nullable=True))
        batch_op.create_index(
            "ix_document_dataset_stance_position",
            ["dataset_id", "stance", "position"],
            unique=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.drop_index("ix_document_dataset_stance_position")
        batch_op.drop_column("position")
