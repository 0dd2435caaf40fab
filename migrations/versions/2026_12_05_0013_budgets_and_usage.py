"""Budgets and usage (usage per team and day, price versions, worst-case reservations), and
batches sent through providers' Batch APIs.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 21:29:54.442060
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.models.base

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("prices_version", sa.String(length=64), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["team.id"], name=op.f("fk_usage_daily_team_id_team"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint(
            "team_id",
            "day",
            "job_id",
            "purpose",
            "provider",
            "model",
            "prices_version",
            name=op.f("pk_usage_daily"),
        ),
    )
    op.create_index("ix_usage_daily_team_day", "usage_daily", ["team_id", "day"], unique=False)
    op.add_column("document", sa.Column("prices_version", sa.String(length=64), nullable=True))
    op.add_column(
        "document", sa.Column("judge_prices_version", sa.String(length=64), nullable=True)
    )
    # Jobs from before budgets reserve nothing (they ran without them).
    op.add_column(
        "job",
        sa.Column("reserve_usd_per_item", sa.Float(), nullable=False, server_default="0"),
    )
    op.add_column("team", sa.Column("monthly_budget_usd", sa.Float(), nullable=True))
    json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    op.create_table(
        "llm_batch",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("indices", json, nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("provider_batch_id", sa.String(length=128), nullable=True),
        sa.Column("input_file_id", sa.String(length=128), nullable=True),
        sa.Column("provider_status", sa.String(length=32), nullable=True),
        sa.Column("outcome", json, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("polled_at", app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["job.id"], name=op.f("fk_llm_batch_job_id_job"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_batch")),
    )
    op.create_index("ix_llm_batch_job_status", "llm_batch", ["job_id", "status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_llm_batch_job_status", table_name="llm_batch")
    op.drop_table("llm_batch")
    op.drop_column("team", "monthly_budget_usd")
    op.drop_column("job", "reserve_usd_per_item")
    op.drop_column("document", "judge_prices_version")
    op.drop_column("document", "prices_version")
    op.drop_index("ix_usage_daily_team_day", table_name="usage_daily")
    op.drop_table("usage_daily")
