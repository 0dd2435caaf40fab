"""A job's progress comes from counters kept with its documents: the same numbers as a GROUP BY
over its rows, read without touching those rows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, select

from app.core.db import get_engine, session_scope
from app.generation.pipeline import run_chunk
from app.jobs import service as jobs
from app.models import Document, Job
from tests.conftest import Team, run_local, spec, submit_local
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
    running, dispatcher = submit_local(team, spec(documents=20), window)
    chunk = dispatcher.pop()
    assert chunk is not None
    run_chunk(*chunk, worker_id="w", dispatcher=dispatcher, settings=window, store=store)

    with session_scope() as session:
        job = jobs.get_job(session, team.principal, running.id)
        with statements() as seen:
            one = jobs.view(session, job)
            page, _ = jobs.list_jobs(
                session, team.principal, status=None, dataset=None, cursor=None, limit=10
            )
    assert [s for s in seen if SCAN.search(s)] == []
    assert (one.progress.accepted, one.progress.in_flight, one.progress.planned) == (5, 5, 10)
    assert len(page) == 3
    # The job's counters and dataset name; then the page with its dataset names, and its
    # counters, one query each whatever the page holds.
    assert len(seen) == 4, seen

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
    pipeline._record(context, [pipeline.Outcome(item, late)], report, settings.canary_guid)
    assert report.written == 0
    with session_scope() as session:
        again = jobs.view(session, jobs.get_job(session, team.principal, view.job.id))
    assert from_view(again) == from_view(view) == from_rows(view.job.id)
