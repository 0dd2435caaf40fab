"""Per-minute counters per job, for the throughput chart on a job's page.

On Postgres the minutes of jobs recorded before this revision are counted from their
documents (by when each was written); the embedded mode's SQLite starts empty.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 07:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models.base

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_minute",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("minute", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("accepted", sa.BigInteger(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("duplicates", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("llm_calls", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["job.id"], name=op.f("fk_job_minute_job_id_job"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "minute", name=op.f("pk_job_minute")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "INSERT INTO job_minute (job_id, minute, accepted, rejected, duplicates, failed, "
            "llm_calls, cost_usd) "
            "SELECT job_id, date_trunc('minute', created_at), "
            "count(*) FILTER (WHERE status = 'accepted'), "
            "count(*) FILTER (WHERE status = 'rejected'), "
            "count(*) FILTER (WHERE status = 'duplicate'), "
            "count(*) FILTER (WHERE status = 'failed'), "
            "coalesce(sum(llm_calls), 0), coalesce(sum(cost_usd), 0) "
            "FROM document GROUP BY 1, 2"
        )


def downgrade() -> None:
    op.drop_table("job_minute")
