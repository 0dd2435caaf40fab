"""Job progress counters (job_tally), backfilled from documents and item results; indexes for
the job listing's cursor order; pending and leased items of cancelled jobs become cancelled.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 09:12:40.118204
"""

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = ("items", "prompt_tokens", "completion_tokens", "llm_calls", "llm_errors")


def upgrade() -> None:
    op.create_table(
        "job_tally",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("bucket", sa.String(length=200), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTERS),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("scenarios", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["job.id"], name=op.f("fk_job_tally_job_id_job"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "bucket", name=op.f("pk_job_tally")),
    )
    with op.batch_alter_table("job", schema=None) as batch_op:
        # (team_id, created_at, id) leads with team_id: the plain team_id index is redundant.
        batch_op.drop_index(batch_op.f("ix_job_team_id"))
        batch_op.create_index("ix_job_team_created", ["team_id", "created_at", "id"])
        batch_op.create_index("ix_job_dataset_created", ["dataset_id", "created_at", "id"])
    _backfill_documents()
    _backfill_extraction_results()
    work_item, job = _work_item_table(), _job_table()
    op.execute(
        work_item.update()
        .where(work_item.c.state.in_(("pending", "leased")))
        .where(work_item.c.job_id.in_(sa.select(job.c.id).where(job.c.status == "cancelled")))
        .values(state="cancelled", lease_owner=None, lease_expires_at=None)
    )


def downgrade() -> None:
    work_item = _work_item_table()
    op.execute(work_item.update().where(work_item.c.state == "cancelled").values(state="pending"))
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_index("ix_job_dataset_created")
        batch_op.drop_index("ix_job_team_created")
        batch_op.create_index(batch_op.f("ix_job_team_id"), ["team_id"], unique=False)
    op.drop_table("job_tally")


def _tally_table() -> sa.TableClause:
    return sa.table(
        "job_tally",
        sa.column("job_id", sa.Uuid()),
        sa.column("bucket", sa.String()),
        *(sa.column(name, sa.BigInteger()) for name in COUNTERS),
        sa.column("cost_usd", sa.Float()),
        sa.column("scenarios", sa.BigInteger()),
    )


def _job_table() -> sa.TableClause:
    return sa.table(
        "job",
        sa.column("id", sa.Uuid()),
        sa.column("kind", sa.String()),
        sa.column("status", sa.String()),
    )


def _work_item_table() -> sa.TableClause:
    return sa.table(
        "work_item",
        sa.column("job_id", sa.Uuid()),
        sa.column("state", sa.String()),
        sa.column("lease_owner", sa.String()),
        sa.column("lease_expires_at", sa.DateTime()),
        sa.column("result", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
    )


def _backfill_documents() -> None:
    """The buckets app/jobs/tally.py writes, as of this revision, by GROUP BY in the database."""
    document = sa.table(
        "document",
        *(
            sa.column(name, sa.String())
            for name in ("status", "reason", "stance", "judge_verdict", "judge_model")
        ),
        sa.column("job_id", sa.Uuid()),
        *(
            sa.column(name, sa.Integer())
            for name in (
                "prompt_tokens",
                "completion_tokens",
                "llm_calls",
                "llm_errors",
                "judge_prompt_tokens",
                "judge_completion_tokens",
            )
        ),
        sa.column("cost_usd", sa.Float()),
        sa.column("judge_cost_usd", sa.Float()),
    )
    tally = _tally_table()
    columns = ["job_id", "bucket", *COUNTERS, "cost_usd", "scenarios"]
    c = document.c

    def total(column: Any) -> Any:
        return sa.func.coalesce(sa.func.sum(column), 0)

    outcome = sa.literal("outcome|") + c.status + "|" + sa.func.coalesce(c.reason, "")
    op.execute(
        tally.insert().from_select(
            columns,
            sa.select(
                c.job_id,
                outcome,
                sa.func.count(),
                total(c.prompt_tokens),
                total(c.completion_tokens),
                total(c.llm_calls),
                total(c.llm_errors),
                total(c.cost_usd),
                sa.literal(0),
            ).group_by(c.job_id, c.status, c.reason),
        )
    )
    verdict = sa.func.coalesce(c.judge_verdict, "")
    judged = sa.literal("judge|") + c.status + "|" + c.stance + "|" + verdict
    op.execute(
        tally.insert().from_select(
            columns,
            sa.select(
                c.job_id,
                judged,
                sa.func.count(),
                total(c.judge_prompt_tokens),
                total(c.judge_completion_tokens),
                sa.literal(0),
                sa.literal(0),
                total(c.judge_cost_usd),
                sa.literal(0),
            )
            .where(c.judge_model.is_not(None))
            .group_by(c.job_id, c.status, c.stance, c.judge_verdict),
        )
    )


def _backfill_extraction_results() -> None:
    """Extraction items keep their outcome as JSON: summed here (at most 500 per job)."""
    work_item, job = _work_item_table(), _job_table()
    rows = op.get_bind().execute(
        sa.select(work_item.c.job_id, work_item.c.result)
        .join(job, job.c.id == work_item.c.job_id)
        .where(job.c.kind == "extract_scenarios", work_item.c.result.is_not(None))
    )
    sums: dict[tuple[Any, str], dict[str, Any]] = defaultdict(
        lambda: dict.fromkeys((*COUNTERS, "cost_usd", "scenarios"), 0)
    )
    for job_id, result in rows:
        totals = sums[(job_id, f"outcome|{result['status']}|{result.get('reason') or ''}")]
        totals["items"] += 1
        for name in ("prompt_tokens", "completion_tokens", "llm_calls", "llm_errors", "cost_usd"):
            totals[name] += result.get(name, 0)
        totals["scenarios"] += len(result.get("scenarios", []))
    if sums:
        op.bulk_insert(
            _tally_table(),
            [
                {"job_id": job_id, "bucket": bucket} | totals
                for (job_id, bucket), totals in sums.items()
            ],
        )
