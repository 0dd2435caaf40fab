"""Work items indexed by (job, state, index), so a worker leases a job's lowest pending items
without stepping over its done ones; documents' texts compressed with lz4 where the server
has it (about 2.5 times faster to write than the default pglz, for new rows).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 01:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LZ4 = """
DO $$
BEGIN
    ALTER TABLE document
        ALTER COLUMN text SET COMPRESSION {method},
        ALTER COLUMN raw_text SET COMPRESSION {method};
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this server has no lz4: document texts keep the default compression';
END $$;
"""


def upgrade() -> None:
    op.create_index("ix_work_item_job_state_index", "work_item", ["job_id", "state", "item_index"])
    op.drop_index("ix_work_item_job_state", table_name="work_item")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_LZ4.format(method="lz4"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_LZ4.format(method="default"))
    op.create_index("ix_work_item_job_state", "work_item", ["job_id", "state"])
    op.drop_index("ix_work_item_job_state_index", table_name="work_item")
