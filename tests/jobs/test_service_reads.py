"""The job service's reads through their pages (cursors, limits, filters, what a miss says),
and a submission that loses the race for its idempotency key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from app.core.db import session_scope
from app.core.errors import IdempotencyKeyReused, InvalidRequest, NotFound
from app.jobs import repository, service
from app.jobs.dispatch import LocalDispatcher
from app.jobs.spec import JobSpec
from app.models import Job
from app.teams.keys import Role
from app.teams.service import Principal
from tests.conftest import Team, spec
from tests.dedup import factory


def reader(made: factory.Seeded) -> Principal:
    return Principal(team_id=made.team_id, role=Role.READ, key_id=uuid.uuid4())


def test_documents_and_items_come_in_pages_with_the_last_index_as_cursor() -> None:
    with session_scope() as session:
        made = factory.dataset(session, items=5)
        for i, status in enumerate(["accepted", "rejected", "accepted", "accepted", "accepted"]):
            factory.document(session, made, factory.text(f"d{i}"), status=status)
    who = reader(made)
    with session_scope() as session:
        pages = []
        cursor: int | None = None
        while True:
            documents, following = service.list_documents(
                session, who, made.job_id, status="accepted", cursor=cursor, limit=2
            )
            pages.append(([d.item_index for d in documents], following))
            if following is None:
                break
            cursor = int(following)
        assert pages == [([0, 2], "2"), ([3, 4], None)]
        everything, last = service.list_documents(
            session, who, made.job_id, status=None, cursor=None, limit=5
        )
        assert ([d.item_index for d in everything], last) == ([0, 1, 2, 3, 4], None)
        first, following = service.list_items(session, who, made.job_id, cursor=None, limit=3)
        assert ([i.item_index for i in first], following) == ([0, 1, 2], "2")
        rest, last = service.list_items(session, who, made.job_id, cursor=2, limit=3)
        assert ([i.item_index for i in rest], last) == ([3, 4], None)


def test_jobs_come_in_pages_newest_first_filtered_by_status_and_dataset() -> None:
    with session_scope() as session:
        made = factory.dataset(session)
        start = datetime(2026, 12, 1, tzinfo=UTC)
        session.execute(
            update(Job).where(Job.id == made.job_id).values(created_at=start, status="running")
        )
        others = [uuid.uuid4() for _ in range(3)]
        for n, job_id in enumerate(others, start=1):
            session.execute(
                insert(Job).values(
                    id=job_id, team_id=made.team_id, dataset_id=None, spec={}, requested=1,
                    max_items=1, status="queued" if n < 3 else "failed",
                    created_at=start + timedelta(hours=n),
                )
            )  # fmt: skip
    who = reader(made)
    with session_scope() as session:
        first, cursor = service.list_jobs(
            session, who, status=None, dataset=None, cursor=None, limit=2
        )
        assert [v.job.id for v in first] == [others[2], others[1]]
        assert cursor == service.job_cursor(start + timedelta(hours=2), others[1])
        rest, last = service.list_jobs(
            session, who, status=None, dataset=None, cursor=cursor, limit=2
        )
        assert ([v.job.id for v in rest], last) == ([others[0], made.job_id], None)
        queued, _ = service.list_jobs(
            session, who, status="queued", dataset=None, cursor=None, limit=10
        )
        assert [v.job.id for v in queued] == [others[1], others[0]]
        in_dataset, _ = service.list_jobs(
            session, who, status=None, dataset="near-dups", cursor=None, limit=10
        )
        assert [v.job.id for v in in_dataset] == [made.job_id]
        assert [v.dataset for v in in_dataset] == ["near-dups"]
        nowhere = service.list_jobs(
            session, who, status=None, dataset="no-such-set", cursor=None, limit=10
        )
        assert nowhere == ([], None)


def test_a_miss_or_a_bad_cursor_says_which() -> None:
    with session_scope() as session:
        made = factory.dataset(session)
    who, missing = reader(made), uuid.uuid4()
    with session_scope() as session:
        with pytest.raises(NotFound) as job:
            service.read_job(session, who, missing)
        assert job.value.detail == f"job {missing} not found"
        with pytest.raises(NotFound) as document:
            service.get_document(session, who, missing)
        assert document.value.detail == f"document {missing} not found"
        with pytest.raises(InvalidRequest) as cursor:
            service.list_jobs(session, who, status=None, dataset=None, cursor="12-zz", limit=1)
        assert cursor.value.detail == ("malformed cursor '12-zz'; pass next_cursor back unchanged")


def limits_asked(monkeypatch: pytest.MonkeyPatch, *reads: str) -> list[int]:
    """The ``limit`` of every call to these repository reads, in order."""
    asked: list[int] = []
    for name in reads:
        read = getattr(repository, name)

        def counted(*args: Any, _read: Any = read, **kwargs: Any) -> Any:
            asked.append(kwargs["limit"])
            return _read(*args, **kwargs)

        monkeypatch.setattr(repository, name, counted)
    return asked


def test_a_page_of_jobs_reads_one_row_past_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    start = datetime(2026, 12, 2, tzinfo=UTC)
    with session_scope() as session:
        made = factory.dataset(session)
        session.execute(update(Job).where(Job.id == made.job_id).values(created_at=start))
        later = [uuid.uuid4() for _ in range(3)]
        for n, job_id in enumerate(later, start=1):
            session.execute(
                insert(Job).values(
                    id=job_id, team_id=made.team_id, dataset_id=None, spec={}, requested=1,
                    max_items=1, created_at=start + timedelta(hours=n),
                )
            )  # fmt: skip
    asked = limits_asked(monkeypatch, "list_jobs")
    with session_scope() as session:
        page, cursor = service.list_jobs(
            session, reader(made), status=None, dataset=None, cursor=None, limit=3
        )
    assert [v.job.id for v in page] == later[::-1]
    assert cursor == service.job_cursor(start + timedelta(hours=1), later[0])
    assert asked == [4]


def test_a_page_reads_one_row_past_its_limit_and_a_full_last_page_has_no_cursor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with session_scope() as session:
        made = factory.dataset(session, items=5)
        for i in range(5):
            factory.document(session, made, factory.text(f"d{i}"))
    asked = limits_asked(monkeypatch, "list_documents", "list_items")
    who = reader(made)
    with session_scope() as session:
        documents, following = service.list_documents(
            session, who, made.job_id, status=None, cursor=None, limit=3
        )
        assert ([d.item_index for d in documents], following) == ([0, 1, 2], "2")
        items, last = service.list_items(session, who, made.job_id, cursor=1, limit=3)
        assert ([i.item_index for i in items], last) == ([2, 3, 4], None)
    assert asked == [4, 4]  # one row past the page tells whether another follows


def test_a_queued_job_is_active_until_it_ends() -> None:
    with session_scope() as session:
        made = factory.dataset(session)
        assert made.job_id in service.active_job_ids(session)
        assert service.end_job(session, made.job_id, "cancelled")
        assert made.job_id not in service.active_job_ids(session)
        ended = session.execute(
            select(Job.finished_at, Job.updated_at).where(Job.id == made.job_id)
        ).one()
        assert ended.updated_at == ended.finished_at


def test_a_submission_that_loses_the_insert_race_for_its_key_returns_the_winner() -> None:
    """Two requests with one Idempotency-Key, both past the early lookup: the second insert
    hits the key's unique index and answers with the first job, or refuses another spec."""
    with session_scope() as session:
        made = factory.dataset(session)
    who = Principal(team_id=made.team_id, role=Role.SUBMIT, key_id=uuid.uuid4())

    def racer(request_sha256: str) -> Job:
        return service.new_job(
            who, service.GENERATE, {}, request_sha256, "key-1",
            requested=1, max_items=1, dataset_id=made.dataset_id, name=None,
        )  # fmt: skip

    with session_scope() as session:
        winner, created = service.insert_job(session, who, racer("a" * 64))
        assert created
        winner_id = winner.id
    with session_scope() as session:
        replayed, created = service.insert_job(session, who, racer("a" * 64))
        assert (replayed.id, created) == (winner_id, False)
        with pytest.raises(IdempotencyKeyReused):
            service.insert_job(session, who, racer("b" * 64))
    duplicate = racer("a" * 64)  # another conflict than the key's (the same id) is no replay
    duplicate.id, duplicate.idempotency_key = winner_id, None
    with session_scope() as session, pytest.raises(IntegrityError):
        service.insert_job(session, who, duplicate)


def test_a_submission_past_the_lookup_of_its_key_gets_the_first_job(
    team: Team, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = JobSpec.model_validate(spec())

    def submit() -> tuple[uuid.UUID, bool]:
        with session_scope() as session:
            job, created = service.submit_job(
                session, team.principal, body, idempotency_key="race-1",
                dispatcher=LocalDispatcher(), settings=settings,
            )  # fmt: skip
            return job.id, created

    first, created = submit()
    assert created
    lookup = service.replay
    lookups: list[str | None] = []

    def before_the_first_commit(*args: Any) -> Job | None:
        lookups.append(args[2])  # the first lookup misses, as if the first job were not in yet
        return None if len(lookups) == 1 else lookup(*args)

    monkeypatch.setattr(service, "replay", before_the_first_commit)
    assert submit() == (first, False)
    assert lookups == ["race-1", "race-1"]
