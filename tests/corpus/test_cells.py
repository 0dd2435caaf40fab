"""The corpus cells agree with the documents through every kind of write, on both backends:
many-row inserts and COPY, status changes, deletes, and a dataset deleted with its cells."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.orm import Session

from app.core import migrate
from app.core.db import make_engine
from app.core.sql import copy_rows
from app.models import CorpusCell, Dataset, Document, Job, Team, WorkItem
from app.models.corpus_cell import STANCES, STATUSES

KEY = ("dataset_id", "scenario_id", "surface_form", "stance", "status")


def kept_and_counted(
    connection: Connection,
) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    """(the counts as the triggers kept them, the same counted from the documents), by
    dataset, scenario, form, stance and status, with zero counts left out of both."""
    kept: Counter[tuple[Any, ...]] = Counter()
    for row in connection.execute(select(CorpusCell)):
        for stance in STANCES:
            for status in STATUSES:
                count = getattr(row, f"{stance}_{status}")
                assert count >= 0, row
                if count:
                    key = (row.dataset_id, row.scenario_id, row.surface_form, stance, status)
                    kept[key] = count
    columns = [getattr(Document, name) for name in KEY]
    counted = Counter(
        {
            tuple(row[:-1]): row[-1]
            for row in connection.execute(select(*columns, func.count()).group_by(*columns))
        }
    )
    return kept, counted


def assert_cells_agree(connection: Connection) -> None:
    kept, counted = kept_and_counted(connection)
    assert kept == counted


def documents(
    job_id: uuid.UUID, team_id: uuid.UUID, dataset_id: uuid.UUID, n: int, start: int = 0
) -> list[dict[str, Any]]:
    return [
        {
            "id": uuid.uuid4(),
            "job_id": job_id,
            "item_index": index,
            "team_id": team_id,
            "dataset_id": dataset_id,
            "status": ("accepted", "rejected", "accepted", "failed")[index % 4],
            "stance": ("aligned", "misaligned")[index % 2],
            "scenario_id": f"s{index % 3}",
            "surface_form": f"f{index % 5}",
            "model": "m",
            "prompt_sha256": "0" * 64,
            "template_version": "v1",
        }
        for index in range(start, start + n)
    ]


def seed(connection: Connection, n: int) -> dict[str, uuid.UUID]:
    ids = {
        "team": uuid.uuid4(),
        "dataset": uuid.uuid4(),
        "other": uuid.uuid4(),
        "job": uuid.uuid4(),
    }
    connection.execute(insert(Team), {"id": ids["team"], "name": "t"})
    for name in ("dataset", "other"):
        connection.execute(insert(Dataset), {"id": ids[name], "team_id": ids["team"], "name": name})
    connection.execute(
        insert(Job),
        {
            "id": ids["job"],
            "team_id": ids["team"],
            "dataset_id": ids["dataset"],
            "kind": "generate",
            "spec": {},
            "status": "running",
            "requested": n,
            "max_items": 2 * n,
            "planned_items": 2 * n,
        },
    )
    connection.execute(
        insert(WorkItem),
        [
            {"job_id": ids["job"], "item_index": i, "plan": {}, "state": "done"}
            for i in range(2 * n)
        ],
    )
    return ids


@pytest.fixture(params=["postgres", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("scratch_database_url"))
    return f"sqlite:///{tmp_path / 'embedded.db'}"


def test_cells_follow_inserts_status_changes_and_deletes(url: str) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        ids = seed(connection, 40)
        rows = documents(ids["job"], ids["team"], ids["dataset"], 40)
        connection.execute(insert(Document), rows)  # one statement of many rows
        assert_cells_agree(connection)
        kept, _ = kept_and_counted(connection)
        assert sum(kept.values()) == 40

        # A status change moves a document between cells; other updates move nothing.
        connection.execute(
            update(Document)
            .where(Document.status == "accepted", Document.scenario_id == "s0")
            .values(status="duplicate")
        )
        connection.execute(update(Document).values(position=Document.item_index))
        connection.execute(
            update(Document).where(Document.status == "rejected").values(status="rejected")
        )
        assert_cells_agree(connection)

        connection.execute(delete(Document).where(Document.status == "failed"))
        assert_cells_agree(connection)
        kept, _ = kept_and_counted(connection)
        assert sum(kept.values()) == 30

    with Session(engine) as session, session.begin():
        more = documents(ids["job"], ids["team"], ids["dataset"], 20, start=40)
        if engine.dialect.name == "postgresql":
            assert copy_rows(session, Document.__table__, more)  # type: ignore[arg-type]
            # A COPY that meets a row already there rolls back whole, its counts too.
            again = more[:1] + documents(ids["job"], ids["team"], ids["dataset"], 5, start=60)
            assert not copy_rows(session, Document.__table__, again)  # type: ignore[arg-type]
        else:
            session.execute(insert(Document), more)
        assert_cells_agree(session.connection())

    with engine.begin() as connection:  # the dataset goes, its cells with it
        connection.execute(delete(Dataset).where(Dataset.id == ids["dataset"]))
        assert connection.scalar(select(func.count()).select_from(CorpusCell)) == 0
        assert_cells_agree(connection)
    engine.dispose()


def test_the_migration_counts_the_documents_already_there(url: str) -> None:
    migrate.upgrade(url, "0016")
    engine = make_engine(url)
    with engine.begin() as connection:
        ids = seed(connection, 12)
        connection.execute(insert(Document), documents(ids["job"], ids["team"], ids["dataset"], 12))
    migrate.upgrade(url)
    with engine.begin() as connection:
        assert_cells_agree(connection)
        kept, _ = kept_and_counted(connection)
        assert sum(kept.values()) == 12
        connection.execute(delete(Document).where(Document.item_index < 4))
        assert_cells_agree(connection)
    engine.dispose()


def test_the_cells_sum_by_scenario_form_and_in_all_on_both_backends(url: str) -> None:
    from sqlalchemy.orm import Session as OrmSession

    from app.corpus.repository import summed

    migrate.upgrade(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        ids = seed(connection, 30)
        rows = documents(ids["job"], ids["team"], ids["dataset"], 30)
        connection.execute(insert(Document), rows)
        connection.execute(delete(Document).where(Document.scenario_id == "s2"))  # zero cells
    with OrmSession(engine) as session:
        found = summed(session, ids["dataset"])
    live = [row for row in rows if row["scenario_id"] != "s2"]
    by_kind = {(row.kind, row.name): row for row in found}
    assert {name for kind, name in by_kind if kind == "scenario"} == {"s0", "s1"}
    for (kind, name), row in by_kind.items():
        mine = [
            d
            for d in live
            if kind == "all" or d["scenario_id" if kind == "scenario" else "surface_form"] == name
        ]
        ok = [d for d in mine if d["status"] == "accepted"]
        assert row.aligned == sum(d["stance"] == "aligned" for d in ok)
        assert row.misaligned == sum(d["stance"] == "misaligned" for d in ok)
        assert row.rejected == sum(d["status"] == "rejected" for d in mine)
        assert row.failed == sum(d["status"] == "failed" for d in mine)
        assert row.covering == len({(d["scenario_id"], d["surface_form"]) for d in ok})
        assert row.covered == len({(d["scenario_id"], d["surface_form"], d["stance"]) for d in ok})
    engine.dispose()
