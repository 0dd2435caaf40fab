"""A dataset's documents counted by scenario x surface form (a column per stance x status),
kept by triggers; partial indexes on a dataset's duplicates and decontamination hits.

The corpus page's coverage and balance read these counts: a GROUP BY over a dataset's
documents takes a second at two million of them. Triggers keep the counts, so every path that
inserts, re-labels or deletes documents (COPY included) keeps them right, in its own
statement. On Postgres inserts and deletes are counted once per statement, from its
transition table; a status change (a document found a duplicate) once per row, and only
when the status really changes, so the many updates that place or shard documents cost
nothing. A statement locks its cells in key order (ORDER BY), as the rest of the recording
locks its rows in a fixed order, so two writers of one dataset cannot deadlock on them. SQLite
(the embedded mode) has row triggers only, and one writer.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 07:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As of this revision (app/models/corpus_cell.py may grow; this must not change).
STANCES = ("aligned", "misaligned")
STATUSES = ("accepted", "rejected", "duplicate", "failed")
COUNTS = [(stance, status, f"{stance}_{status}") for stance in STANCES for status in STATUSES]
KEY = "dataset_id, scenario_id, surface_form"
COLUMNS = ", ".join(column for _stance, _status, column in COUNTS)
ADD = ", ".join(f"{column} = corpus_cell.{column} + excluded.{column}" for *_, column in COUNTS)


def _counted(rows: str, sign: str) -> str:
    """A statement's rows in ``rows`` (a transition table), counted into their cells."""
    counts = ", ".join(
        f"{sign}count(*) FILTER (WHERE stance = '{stance}' AND status = '{status}')"
        for stance, status, _column in COUNTS
    )
    return f"INSERT INTO corpus_cell ({KEY}, {COLUMNS}) SELECT {KEY}, {counts} FROM {rows}"


def _one(row: str, stance: str, status: str) -> str:
    """1 if the trigger's ``row`` (OLD or NEW) is of this stance and status, else 0."""
    return f"(CASE WHEN {row}.stance = '{stance}' AND {row}.status = '{status}' THEN 1 ELSE 0 END)"


def _row_counted(row: str, counts: list[str]) -> str:
    """The trigger's ``row`` counted into its cell with one count per column."""
    return (
        f"INSERT INTO corpus_cell ({KEY}, {COLUMNS}) "
        f"VALUES ({row}.dataset_id, {row}.scenario_id, {row}.surface_form, {', '.join(counts)}) "
        f"ON CONFLICT ({KEY}) DO UPDATE SET {ADD}"
    )


def _moved(old: str, new: str) -> str:
    """The one-row change from ``old`` to ``new`` (same scenario and form, another status)."""
    return _row_counted(new, [f"{_one(new, *c[:2])} - {_one(old, *c[:2])}" for c in COUNTS])


POSTGRES = f"""
CREATE FUNCTION corpus_cell_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    {_counted("inserted", "")} GROUP BY {KEY} ORDER BY {KEY}
    ON CONFLICT ({KEY}) DO UPDATE SET {ADD};
  ELSIF TG_OP = 'DELETE' THEN
    -- A dataset being deleted takes its cells with it: nothing to take back.
    {_counted("deleted", "-")}
    WHERE EXISTS (SELECT 1 FROM dataset WHERE dataset.id = deleted.dataset_id)
    GROUP BY {KEY} ORDER BY {KEY}
    ON CONFLICT ({KEY}) DO UPDATE SET {ADD};
  ELSE
    {_moved("OLD", "NEW")};
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER corpus_cell_insert AFTER INSERT ON document
  REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION corpus_cell_count();
CREATE TRIGGER corpus_cell_delete AFTER DELETE ON document
  REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION corpus_cell_count();
CREATE TRIGGER corpus_cell_status AFTER UPDATE OF status ON document
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION corpus_cell_count();
"""


def _sqlite_row(row: str, sign: str) -> str:
    return _row_counted(row, [f"{sign}{_one(row, *c[:2])}" for c in COUNTS]) + ";"


SQLITE = [
    f"CREATE TRIGGER corpus_cell_insert AFTER INSERT ON document BEGIN "
    f"{_sqlite_row('NEW', '')} END",
    # A dataset being deleted takes its cells with it: nothing to take back.
    f"CREATE TRIGGER corpus_cell_delete AFTER DELETE ON document "
    f"WHEN EXISTS (SELECT 1 FROM dataset WHERE dataset.id = OLD.dataset_id) BEGIN "
    f"{_sqlite_row('OLD', '-')} END",
    f"CREATE TRIGGER corpus_cell_status AFTER UPDATE OF status ON document "
    f"WHEN OLD.status IS NOT NEW.status BEGIN {_moved('OLD', 'NEW')}; END",
]


def upgrade() -> None:
    op.create_table(
        "corpus_cell",
        sa.Column("dataset_id", sa.Uuid(), nullable=False),
        sa.Column("scenario_id", sa.String(length=64), nullable=False),
        sa.Column("surface_form", sa.String(length=64), nullable=False),
        *(sa.Column(column, sa.BigInteger(), nullable=False) for *_, column in COUNTS),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["dataset.id"],
            name=op.f("fk_corpus_cell_dataset_id_dataset"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "dataset_id", "scenario_id", "surface_form", name=op.f("pk_corpus_cell")
        ),
    )
    for name, columns, where in (
        ("ix_document_duplicates", ["dataset_id", "duplicate_of"], "status = 'duplicate'"),
        ("ix_document_contaminated", ["dataset_id"], "reason = 'contaminated'"),
    ):
        op.create_index(
            name,
            "document",
            columns,
            postgresql_where=sa.text(where),
            sqlite_where=sa.text(where),
        )
    # Counted from what is there, then kept by the triggers (one transaction: none is missed).
    op.execute(f"{_counted('document', '')} GROUP BY {KEY}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES)
        op.execute("ANALYZE corpus_cell")
    else:
        for statement in SQLITE:
            op.execute(statement)


def downgrade() -> None:
    for trigger in ("corpus_cell_insert", "corpus_cell_delete", "corpus_cell_status"):
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER {trigger} ON document")
        else:
            op.execute(f"DROP TRIGGER {trigger}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION corpus_cell_count()")
    op.drop_table("corpus_cell")
    op.drop_index("ix_document_contaminated", table_name="document")
    op.drop_index("ix_document_duplicates", table_name="document")
