"""Evaluation sets for decontamination; contamination and stance-judge columns on documents;
a generation counter for each dataset's near-duplicate index.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 01:21:08.637980
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.models.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "eval_set",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["team.id"], name=op.f("fk_eval_set_team_id_team"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eval_set")),
        sa.UniqueConstraint("team_id", "name", name=op.f("uq_eval_set_team_id_name")),
    )
    op.create_table(
        "eval_item",
        sa.Column("eval_set_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["eval_set_id"],
            ["eval_set.id"],
            name=op.f("fk_eval_item_eval_set_id_eval_set"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("eval_set_id", "position", name=op.f("pk_eval_item")),
    )
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("dedup_generation", sa.Integer(), nullable=False, server_default="0")
        )
    json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.add_column(sa.Column("contamination", json, nullable=True))
        batch_op.add_column(sa.Column("judge_verdict", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("judge_model", sa.String(length=200), nullable=True))
        for name in ("judge_prompt_tokens", "judge_completion_tokens"):
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("judge_cost_usd", sa.Float(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("document", schema=None) as batch_op:
        for name in (
            "judge_cost_usd",
            "judge_completion_tokens",
            "judge_prompt_tokens",
            "judge_model",
            "judge_verdict",
            "contamination",
        ):
            batch_op.drop_column(name)
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.drop_column("dedup_generation")
    op.drop_table("eval_item")
    op.drop_table("eval_set")
