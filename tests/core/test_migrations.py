"""Migrations build the schema the models describe, on Postgres and SQLite, and reverse."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, insert, inspect, null, select

from app.core import migrate
from app.jobs.tally import COUNTERS, Tally, judge_report, progress_and_usage
from app.models import Base, Dataset, Document, Job, JobTally, Team, WorkItem
from tests.jobs.grouped import grouped, reported


@pytest.fixture
def postgres_url(scratch_database_url: str) -> str:
    return scratch_database_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'embedded.db'}"


@pytest.mark.parametrize("backend", ["postgres_url", "sqlite_url"])
def test_upgrade_matches_models_and_downgrade_reverses(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(backend)
    migrate.upgrade(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    migrate.downgrade(url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(url)
    assert {"job", "work_item", "document", "dataset_version"} <= set(
        inspect(engine).get_table_names()
    )
    engine.dispose()


def item(
    job_id: uuid.UUID, index: int, state: str, result: dict[str, Any] | None = None
) -> dict[str, Any]:
    # Every row of one executemany names the same columns; no result is SQL NULL, not JSON null.
    stored = null() if result is None else result
    return {"job_id": job_id, "item_index": index, "plan": {}, "state": state, "result": stored}


def _seed_jobs(engine: Engine) -> dict[str, uuid.UUID]:
    """Jobs as revision 0005 stored them: documents, extraction results, a cancelled job."""
    team_id, dataset_id = uuid.uuid4(), uuid.uuid4()
    ids = {"generate": uuid.uuid4(), "extract": uuid.uuid4(), "cancelled": uuid.uuid4()}
    outcomes = [
        ("accepted", None),
        ("rejected", "truncated"),
        ("rejected", "stance_mismatch"),
        ("duplicate", "exact"),
        ("duplicate", "near"),
        ("failed", "llm_unavailable"),
        ("failed", "attempts_exhausted"),
    ]
    with engine.begin() as connection:
        connection.execute(insert(Team), {"id": team_id, "name": "t"})
        connection.execute(insert(Dataset), {"id": dataset_id, "team_id": team_id, "name": "d"})
        for name, job_id in ids.items():
            kind = "extract_scenarios" if name == "extract" else "generate"
            connection.execute(
                insert(Job),
                {
                    "id": job_id,
                    "team_id": team_id,
                    "dataset_id": None if kind == "extract_scenarios" else dataset_id,
                    "kind": kind,
                    "spec": {},
                    "status": "cancelled" if name == "cancelled" else "running",
                    "requested": 20,
                    "max_items": 40,
                    "planned_items": 20,
                },
            )
        items: list[dict[str, Any]] = []
        documents: list[dict[str, Any]] = []
        for index in range(20):
            status, reason = outcomes[index % len(outcomes)]
            judged = index % 3 != 0
            items.append(item(ids["generate"], index, "done"))
            documents.append(
                {
                    "id": uuid.uuid4(),
                    "job_id": ids["generate"],
                    "item_index": index,
                    "team_id": team_id,
                    "dataset_id": dataset_id,
                    "status": status,
                    "reason": reason,
                    "stance": ("aligned", "misaligned")[index % 2],
                    "scenario_id": "s",
                    "surface_form": "f",
                    "model": "m",
                    "prompt_sha256": "0" * 64,
                    "template_version": "v1",
                    "prompt_tokens": 100 + index,
                    "completion_tokens": 300 + 7 * index,
                    "llm_calls": 1 + index % 2,
                    "llm_errors": index % 2,
                    "cost_usd": 0.001 * index,
                    "judge_model": "judge" if judged else None,
                    "judge_verdict": (None, "aligned", "misaligned", "unclear")[index % 4]
                    if judged
                    else None,
                    "judge_prompt_tokens": 50 * index if judged else 0,
                    "judge_completion_tokens": 5 * index if judged else 0,
                    "judge_cost_usd": 0.0001 * index if judged else 0.0,
                }
            )
        results: list[dict[str, Any] | None] = [
            {"status": "accepted", "scenarios": ["a", "b"], "prompt_tokens": 9, "cost_usd": 0.5},
            {"status": "accepted", "scenarios": ["c"], "completion_tokens": 4, "llm_calls": 1},
            {"status": "rejected", "reason": "no_valid_scenarios", "scenarios": [], "llm_calls": 1},
            {"status": "failed", "reason": "llm_unavailable", "llm_calls": 2, "llm_errors": 2},
            None,
        ]
        for index, result in enumerate(results):
            items.append(
                item(ids["extract"], index, "pending" if result is None else "done", result)
            )
        for index, state in enumerate(("done", "pending", "leased")):
            items.append(item(ids["cancelled"], index, state))
        documents.append(documents[0] | {"id": uuid.uuid4(), "job_id": ids["cancelled"]})
        connection.execute(insert(WorkItem), items)
        connection.execute(insert(Document), documents)
    return ids


@pytest.mark.parametrize("backend", ["postgres_url", "sqlite_url"])
def test_upgrade_backfills_job_counters_that_match_the_rows(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(backend)
    migrate.upgrade(url, "0005")
    engine = create_engine(url)
    try:
        ids = _seed_jobs(engine)
        migrate.upgrade(url)
        with engine.connect() as connection:
            for job_id in ids.values():
                tallies = [
                    Tally(row.bucket, *(getattr(row, name) for name in COUNTERS))
                    for row in connection.execute(select(JobTally).where(JobTally.job_id == job_id))
                ]
                progress, usage = progress_and_usage(
                    tallies, requested=20, planned=20, status="running"
                )
                numbers = reported(progress, usage, judge_report(tallies))
                assert numbers == grouped(connection, job_id)
                assert numbers["attempted"] > 0
            assert dict(
                connection.execute(
                    select(WorkItem.item_index, WorkItem.state).where(
                        WorkItem.job_id == ids["cancelled"]
                    )
                ).all()
            ) == {0: "done", 1: "cancelled", 2: "cancelled"}
        migrate.downgrade(url, "0005")
        assert "job_tally" not in inspect(engine).get_table_names()
        with engine.connect() as connection:
            states = connection.scalars(
                select(WorkItem.state).where(WorkItem.job_id == ids["cancelled"])
            ).all()
        assert sorted(states) == ["done", "pending", "pending"]
    finally:
        engine.dispose()
