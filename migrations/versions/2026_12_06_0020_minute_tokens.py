"""Tokens (prompt and completion) in the per-minute counters: the overview's tokens a minute.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 07:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("activity_minute", "job_minute")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            # Minutes counted before this revision did not count tokens: 0.
            batch.add_column(
                sa.Column("tokens", sa.BigInteger(), nullable=False, server_default="0")
            )
        with op.batch_alter_table(table) as batch:
            batch.alter_column("tokens", server_default=None)


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tokens")
