"""Scenario-extraction jobs: no dataset, per-item results on the work item.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 23:31:17.583197
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.alter_column("dataset_id", existing_type=sa.Uuid(), nullable=True)

    with op.batch_alter_table("work_item", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "result", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
            )
        )


def downgrade() -> None:
    # Extraction jobs have no dataset and cannot exist in the older schema.
    op.execute("DELETE FROM job WHERE dataset_id IS NULL")
    with op.batch_alter_table("work_item", schema=None) as batch_op:
        batch_op.drop_column("result")

    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.alter_column("dataset_id", existing_type=sa.Uuid(), nullable=False)
