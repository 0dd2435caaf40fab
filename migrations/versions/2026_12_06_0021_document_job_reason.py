"""An index on a job's documents by reason, in item order: the job page's rejection examples
(GET /v1/jobs/{id}/documents?reason=) read a page of them without walking the job.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 08:35:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_document_job_reason",
        "document",
        ["job_id", "reason", "item_index"],
        postgresql_where=sa.text("reason IS NOT NULL"),
        sqlite_where=sa.text("reason IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_document_job_reason", table_name="document")
