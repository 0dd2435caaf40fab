"""bench/seed.py: the seeded rows agree with each other and with what the API reads."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from app.core import migrate
from app.jobs import service
from app.models import Job
from bench import seed
from tests.services import PG_ADMIN_URL

ITEMS = 3_000
BATCH = 1_000


def test_the_plan_has_the_issue_s_shape() -> None:
    jobs = seed.plan_jobs(10_000_000)
    assert sum(j.items for j in jobs) == 10_000_000
    giant, *rest = jobs
    assert (giant.kind, giant.status, giant.items) == ("giant", "running", 8_000_000)
    assert giant.items - giant.finished == seed.PLAN_AHEAD_ITEMS
    assert [j.kind for j in rest[:4]] == ["big"] * 4
    small = [j for j in jobs if j.kind == "small"]
    assert len(small) == 1_000
    assert {j.status for j in small} == {"succeeded", "running", "failed", "cancelled", "queued"}
    assert len({j.id for j in jobs}) == len(jobs)
    ages = [j.age for j in jobs]
    assert ages == sorted(ages, reverse=True)  # created oldest first


def test_the_dashboards_plan_has_ten_thousand_jobs_and_two_million_items() -> None:
    jobs = seed.plan_jobs(2_000_000, small_jobs=9_995)  # bench/admin.py's default
    assert len(jobs) == 10_000
    assert sum(j.items for j in jobs) == 2_000_000
    assert min(j.items for j in jobs if j.kind == "small") == seed.SMALL_JOB_MIN_ITEMS


def test_a_plan_below_the_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1,000 work items"):
        seed.plan_jobs(999)


def test_batches_cover_every_item_once_within_the_size() -> None:
    jobs = seed.plan_jobs(50_000)
    covered: dict[uuid.UUID, list[tuple[int, int]]] = {}
    for batch in seed.batches(jobs, 3_000):
        assert sum(s.stop - s.start for s in batch) <= 3_000
        for segment in batch:
            covered.setdefault(segment.job.id, []).append((segment.start, segment.stop))
    for job in jobs:
        ranges = sorted(covered[job.id])
        assert ranges[0][0] == 0
        assert ranges[-1][1] == job.items
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))


def test_every_thousand_finished_items_hold_each_outcome_share() -> None:
    job = seed.JobShape(7, "small", "succeeded", 3_000, 3_000, 0, timedelta(days=1))
    assert job.accepted() == 3 * seed.ACCEPTED_PER_MILLE
    assert job.requested() == job.accepted()


@pytest.fixture
def migrated(scratch_database_url: str) -> str:
    migrate.upgrade(scratch_database_url)
    return scratch_database_url


def test_seeded_rows_counters_and_job_views_agree(migrated: str) -> None:
    lines: list[str] = []
    seeded = seed.seed(migrated, ITEMS, batch_items=BATCH, log=lines.append)
    assert not seeded.skipped
    assert set(seeded.keys) == {"read", "submit"}
    jobs = {j.id: j for j in seeded.jobs}
    engine = create_engine(migrated)
    try:
        with engine.connect() as connection:
            items: dict[uuid.UUID, int] = {
                row[0]: row[1]
                for row in connection.execute(
                    text("SELECT job_id, count(*) FROM work_item GROUP BY 1")
                )
            }
            states: Counter[str] = Counter(
                {
                    row[0]: row[1]
                    for row in connection.execute(
                        text("SELECT state, count(*) FROM work_item GROUP BY 1")
                    )
                }
            )
            counted = set(
                connection.execute(
                    text(
                        "SELECT job_id, 'outcome|' || status || '|' || coalesce(reason, ''), "
                        "count(*) FROM document GROUP BY job_id, status, reason"
                    )
                )
            )
            tallied = set(connection.execute(text("SELECT job_id, bucket, items FROM job_tally")))
        assert sum(items.values()) == ITEMS
        assert all(items.get(job_id, 0) == job.items for job_id, job in jobs.items())
        assert states["leased"] == sum(j.leased for j in jobs.values())
        assert counted == tallied  # the counters say exactly what the documents say

        with Session(engine) as session:
            for row in session.query(Job).all():
                shape = jobs[row.id]
                progress = service.view(session, row).progress
                assert row.planned_items == shape.items
                assert progress.attempted == shape.finished
                assert row.status == shape.status
                if shape.status == "succeeded":
                    assert progress.accepted == row.requested == shape.accepted()
                unfinished = shape.items - shape.finished
                assert progress.in_flight + progress.not_run == unfinished
    finally:
        engine.dispose()

    again: list[str] = []
    second = seed.seed(migrated, ITEMS, batch_items=BATCH, log=again.append)
    assert second.skipped
    assert second.keys == {}
    assert again == [f"{migrated.rsplit('/', 1)[1]} is already seeded ({ITEMS:,} work items)"]


def test_an_interrupted_seed_resumes_where_it_stopped(migrated: str) -> None:
    def interrupt_after_first_batch(line: str) -> None:
        if line.startswith("batch 1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        seed.seed(migrated, ITEMS, batch_items=BATCH, log=interrupt_after_first_batch)
    lines: list[str] = []
    seed.seed(migrated, ITEMS, batch_items=BATCH, log=lines.append)
    assert lines[0].startswith("resuming: 1 of ")
    assert not any(line.startswith("batch 1/") for line in lines)
    engine = create_engine(migrated)
    try:
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT count(*) FROM work_item")) == ITEMS
            assert connection.scalar(text("SELECT count(*) FROM api_key")) == 2
    finally:
        engine.dispose()


def test_a_database_seeded_with_another_shape_is_refused(migrated: str) -> None:
    seed.seed(migrated, ITEMS, batch_items=BATCH, log=lambda _: None)
    with pytest.raises(SystemExit, match="--fresh"):
        seed.seed(migrated, ITEMS + 1, batch_items=BATCH, log=lambda _: None)


def test_ensure_database_keeps_a_seeded_database_unless_fresh(database_name: str) -> None:
    url = seed.ensure_database(database_name, fresh=False, admin_url=PG_ADMIN_URL)
    seed.seed(url, ITEMS, batch_items=BATCH, log=lambda _: None)

    def items() -> int:
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                return int(connection.scalar(text("SELECT count(*) FROM work_item")) or 0)
        finally:
            engine.dispose()

    assert seed.ensure_database(database_name, fresh=False, admin_url=PG_ADMIN_URL) == url
    assert items() == ITEMS
    seed.ensure_database(database_name, fresh=True, admin_url=PG_ADMIN_URL)
    assert items() == 0
