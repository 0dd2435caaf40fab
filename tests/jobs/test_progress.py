"""A job's progress comes from counters kept with its documents: the same numbers as a GROUP BY
over its rows, read without touching those rows."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from app.core import migrate
from app.core.db import get_engine, make_engine, session_scope
from app.jobs import repository
from app.jobs import service as jobs
from app.jobs.tally import Tally, judge_bucket, outcome_bucket
from app.models import Dataset, Document, Job
from app.models import Team as TeamRow
from tests.conftest import Team, run_first_chunk, run_local, spec
from tests.jobs.grouped import grouped, reported
from tests.llm_server import LLMTestServer
from tests.scenarios.test_extraction import sources

SCAN = re.compile(r"\b(?:FROM|JOIN)\s+(?:document|work_item)\b", re.IGNORECASE)


def from_rows(job_id: Any) -> dict[str, Any]:
    with get_engine().connect() as connection:
        return grouped(connection, job_id)


def from_view(view: jobs.JobView) -> dict[str, Any]:
    return reported(view.progress, view.usage, view.judge)


def test_counters_match_the_documents_after_rejections_duplicates_and_failures(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    serial = settings.model_copy(update={"llm_concurrency": 1, "llm_max_retries": 1})
    dataset = "tallied"
    llm.faults.script.extend(["truncate", "refuse", "duplicate", "duplicate", "500", "500"])
    plain = run_local(
        team, spec(documents=4, dataset=dataset, max_attempts_factor=3), serial, store
    )
    assert plain.job.status == "succeeded", plain.job.error
    assert plain.progress.rejected == {"refusal_or_meta": 1, "truncated": 1}
    assert (plain.progress.duplicates, plain.progress.failed) == (1, 1)
    assert from_view(plain) == from_rows(plain.job.id)

    # The judge passes the first text, which dedup then finds in the first job: the judge's
    # count for it must follow its final status, duplicate.
    llm.faults.script.extend(["duplicate"])
    llm.faults.judge_script.extend(["right", "wrong", "unclear", "bad_json", "bad_json"])
    raw = spec(documents=3, dataset=dataset, seed=2, max_attempts_factor=3, judge={"enabled": True})
    judged = run_local(team, raw, serial, store)
    assert judged.job.status == "succeeded", judged.job.error
    assert judged.judge is not None
    assert judged.judge.judged > judged.judge.agreed > 0
    with session_scope() as session:
        statuses = session.execute(
            select(Document.status, Document.judge_verdict).where(Document.job_id == judged.job.id)
        ).all()
    assert ("duplicate", "aligned") in statuses
    assert from_view(judged) == from_rows(judged.job.id)

    with session_scope() as session:
        listed, _ = jobs.list_jobs(
            session, team.principal, status=None, dataset=dataset, cursor=None, limit=10
        )
    assert {view.job.id: from_view(view) for view in listed} == {
        plain.job.id: from_rows(plain.job.id),
        judged.job.id: from_rows(judged.job.id),
    }


def test_extraction_counters_match_the_item_results(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    serial = settings.model_copy(update={"llm_concurrency": 1, "llm_max_retries": 1})
    llm.faults.script.extend(["ok", "bad_json", "500", "500", "ok"])
    view = run_local(
        team, {"sources": sources(4), "per_source": 2}, serial, store, kind="extract_scenarios"
    )
    assert view.job.status == "succeeded", view.job.error
    assert view.progress.rejected == {"no_valid_scenarios": 1}
    assert view.progress.failed == 1
    assert view.progress.scenarios_extracted == 4
    assert (view.progress.in_flight, view.progress.not_run) == (0, 0)
    assert from_view(view) == from_rows(view.job.id)


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every SQL statement the engine sends while the block runs."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])  # (connection, cursor, statement, parameters, context, many)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_reading_and_advancing_a_job_never_reads_its_items_or_documents(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    llm.faults.script.extend(["truncate"])
    for _ in range(2):
        run_local(team, spec(documents=3, judge={"enabled": True}), settings, store)
    window = settings.model_copy(update={"plan_ahead_items": 5})
    running, dispatcher = run_first_chunk(team, spec(documents=20), window, store)

    with session_scope() as session:
        job = jobs.get_job(session, team.principal, running.id)
        with statements() as seen:
            one = jobs.view(session, job)
        with statements() as read:
            status = jobs.read_job(session, team.principal, running.id)
        with statements() as listed:
            page, _ = jobs.list_jobs(
                session, team.principal, status=None, dataset=None, cursor=None, limit=10
            )
    for statement in seen + read + listed:
        assert not SCAN.search(statement), statement
    assert (one.progress.accepted, one.progress.in_flight, one.progress.planned) == (5, 5, 10)
    assert status == one
    assert len(page) == 3
    # A job row in hand: its counters, then its dataset's name. The status read and a page of
    # the listing: one statement each, with the jobs' counters and dataset names in it.
    assert len(seen) == 2, seen
    assert len(read) == 1, read
    assert len(listed) == 1, listed

    wider = settings.model_copy(update={"plan_ahead_items": 8})
    with session_scope() as session, statements() as seen:
        jobs.advance_job(session, running.id, dispatcher=dispatcher, settings=wider, store=store)
    assert [s for s in seen if SCAN.search(s)] == []
    with session_scope() as session:
        topped_up = session.get(Job, running.id)
        assert topped_up is not None
        assert topped_up.planned_items == 13  # 3 more, up to 8 in flight


def test_a_second_delivery_of_a_written_item_counts_nothing(
    team: Team, settings: Any, store: Any, monkeypatch: Any
) -> None:
    from app.generation import pipeline
    from app.generation.context import JobContext
    from app.jobs import repository

    view = run_local(team, spec(documents=2), settings, store)
    with session_scope() as session:
        job = repository.get_job(session, view.job.id)
        assert job is not None
        context = JobContext.for_job(job, session)
    item = context.plan(0, 1)[0]
    # The race: this delivery looked before the first one committed its row.
    monkeypatch.setattr(repository, "existing_documents", lambda *_args: set())
    late = {"status": "failed", "reason": "llm_unavailable", "detail": "late delivery"}
    late |= {"model": "m", "prompt_sha256": "", "template_version": ""}
    report = pipeline.ChunkReport(job_id=view.job.id)
    pipeline.record_outcomes(context, [pipeline.Outcome(item, late)], report, settings.canary_guid)
    assert report.written == 0
    with session_scope() as session:
        again = jobs.view(session, jobs.get_job(session, team.principal, view.job.id))
    assert from_view(again) == from_view(view) == from_rows(view.job.id)


@pytest.fixture(params=["postgresql", "sqlite"])
def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The service's database and the embedded one: the job reads build their counters in SQL
    (``json_rows``), spelled differently by each."""
    if request.param == "postgresql":
        yield get_engine()
        return
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_job_reads_return_the_counters_written_on_either_database(any_engine: Engine) -> None:
    written = [
        Tally(outcome_bucket("accepted", None), 3, 30, 300, 3, 1, 0.25, 0),
        Tally(outcome_bucket("rejected", "too_short"), 2, 20, 200, 2, 0, 0.125, 0),
        Tally(judge_bucket("accepted", "aligned", "aligned"), 3, 9, 3, 0, 0, 0.5, 0),
    ]
    with Session(any_engine) as session, session.begin():
        team = TeamRow(name=f"reads-{uuid.uuid4().hex[:8]}")
        session.add(team)
        session.flush()
        dataset = Dataset(team_id=team.id, name="reads")
        session.add(dataset)
        session.flush()
        specs = {"documents": 5, "judge": {"enabled": True}}
        counted, empty = (
            Job(team_id=team.id, dataset_id=dataset.id, spec=specs, requested=5, max_items=10)
            for _ in range(2)
        )
        session.add_all([counted, empty])
        session.flush()
        repository.add_to_tally(session, counted.id, written)
        team_id, dataset_id, counted_id, empty_id = team.id, dataset.id, counted.id, empty.id

    with Session(any_engine) as session:
        found = repository.get_job_read(session, counted_id, team_id)
        assert found is not None
        record, dataset_name, tallies = found
        assert (record.id, record.spec, dataset_name) == (counted_id, specs, "reads")
        assert sorted(tallies) == sorted(written)
        assert all(isinstance(t.cost_usd, float) for t in tallies)
        assert repository.tallies(session, counted_id) == tallies
        assert repository.get_job_read(session, counted_id, uuid.uuid4()) is None

        page = repository.list_jobs(
            session, team_id, status="queued", dataset_id=dataset_id, before=None, limit=5
        )
        assert {r.id: (name, sorted(t)) for r, name, t in page} == {
            counted_id: ("reads", sorted(written)),
            empty_id: ("reads", []),
        }
        newest = page[0][0]
        after = repository.list_jobs(
            session,
            team_id,
            status=None,
            dataset_id=None,
            before=(newest.created_at, newest.id),
            limit=5,
        )
        assert [r.id for r, _name, _t in after] == [page[1][0].id]
