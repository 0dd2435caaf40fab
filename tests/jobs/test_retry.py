"""Retrying a job's failed items: they run again, counted once, and a failed job runs again
with its accepted texts claimed back."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.core.errors import Conflict
from app.generation import local_runner
from app.jobs import service as jobs
from app.jobs.dispatch import LocalDispatcher
from app.models import ContentFingerprint, Document
from tests.conftest import Team, run_local, spec, submit_local
from tests.corpus.test_cells import assert_cells_agree
from tests.jobs.grouped import USAGE
from tests.jobs.test_progress import from_rows, from_view
from tests.llm_server import LLMTestServer


def retry(team: Team, job_id: Any, settings: Any, store: Any) -> tuple[int, Any]:
    """Retry the job's failed items and run what that dispatched here; (retried, view)."""
    dispatcher = LocalDispatcher()
    with session_scope() as session:
        retried = jobs.retry_failed_items(
            session, team.principal, job_id, dispatcher=dispatcher, settings=settings
        )
    run = local_runner.start(job_id, dispatcher, settings=settings, store=store)
    assert run.done.wait(120), "local run did not finish"
    if run.error is not None:
        raise run.error
    with session_scope() as session:
        return retried, jobs.view(session, jobs.get_job(session, team.principal, job_id))


def statuses(job_id: Any) -> list[tuple[int, str]]:
    with session_scope() as session:
        return [
            (index, status)
            for index, status in session.execute(
                select(Document.item_index, Document.status)
                .where(Document.job_id == job_id)
                .order_by(Document.item_index)
            )
        ]


def test_a_failed_jobs_failed_items_run_again_and_it_succeeds(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    few_retries = settings.model_copy(update={"llm_max_retries": 1, "llm_concurrency": 1})
    llm.faults.script.extend(["500", "500"])  # the first item fails both of its attempts
    failed = run_local(team, spec(documents=2, max_attempts_factor=1), few_retries, store)
    assert failed.job.status == "failed"
    assert (failed.progress.accepted, failed.progress.failed) == (1, 1)

    retried, view = retry(team, failed.job.id, few_retries, store)
    assert retried == 1
    assert view.job.status == "succeeded", view.job.error
    assert (view.progress.accepted, view.progress.failed) == (2, 0)
    assert statuses(view.job.id) == [(0, "accepted"), (1, "accepted")]
    # The counters are the rows', but for the calls of the removed failed document: money
    # spent stays spent (and counted).
    counted, rows = from_view(view), from_rows(view.job.id)
    assert counted["llm_errors"] - rows["llm_errors"] == 2
    assert {k: v for k, v in counted.items() if k not in USAGE} == {
        k: v for k, v in rows.items() if k not in USAGE
    }
    with session_scope() as session:  # its texts are in the dedup index again
        claimed = session.scalar(
            select(func.count())
            .select_from(ContentFingerprint)
            .join(Document, Document.id == ContentFingerprint.document_id)
            .where(Document.job_id == view.job.id)
        )
    assert claimed == 2
    with session_scope() as session:  # the failed document went from its cell with its row
        assert_cells_agree(session.connection())


def test_a_text_another_job_took_meanwhile_becomes_a_duplicate_when_its_job_runs_again(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    few_retries = settings.model_copy(update={"llm_max_retries": 1, "llm_concurrency": 1})
    llm.faults.script.extend(["500", "500"])  # item 0 fails; item 1 is accepted
    failed = run_local(
        team, spec(dataset="taken", documents=2, max_attempts_factor=1), few_retries, store
    )
    assert failed.job.status == "failed"
    other = run_local(team, spec(dataset="taken", documents=1, seed=9), few_retries, store)
    with session_scope() as session:
        mine = session.scalars(
            select(Document).where(Document.job_id == failed.job.id, Document.item_index == 1)
        ).one()
        theirs = session.scalars(select(Document).where(Document.job_id == other.job.id)).one()
        # What a writer of another job could do while this one was failed: its text, which
        # the failed job had released, is claimed by that job's document.
        session.add(
            ContentFingerprint(
                dataset_id=mine.dataset_id,
                content_sha256=mine.content_sha256,
                document_id=theirs.id,
            )
        )

    _retried, view = retry(team, failed.job.id, few_retries, store)
    assert view.progress.duplicates == 1
    with session_scope() as session:
        copy = session.get(Document, mine.id)
        assert copy is not None
        assert (copy.status, copy.reason, copy.duplicate_of) == ("duplicate", "exact", theirs.id)
        assert_cells_agree(session.connection())  # it moved from accepted to duplicate
    counted, rows = from_view(view), from_rows(view.job.id)
    assert {k: v for k, v in counted.items() if k not in USAGE} == {
        k: v for k, v in rows.items() if k not in USAGE
    }


def test_a_succeeded_or_cancelled_jobs_items_are_not_retried(
    team: Team, settings: Any, store: Any
) -> None:
    succeeded = run_local(team, spec(documents=1), settings, store).job.id
    cancelled, _dispatcher = submit_local(team, spec(documents=1), settings)
    with session_scope() as session:
        jobs.cancel_job(session, team.principal, cancelled.id)
    for job_id, status in ((succeeded, "succeeded"), (cancelled.id, "cancelled")):
        with session_scope() as session, pytest.raises(Conflict, match=f"that is {status}"):
            jobs.retry_failed_items(
                session, team.principal, job_id, dispatcher=LocalDispatcher(), settings=settings
            )


def test_the_api_retries_a_jobs_failed_items_and_refuses_a_finished_job(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    done = run_local(team, spec(documents=1), settings, store)
    refused = client.post(f"/v1/jobs/{done.job.id}/retry-failed", headers=team.headers("submit"))
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert "that is succeeded" in refused.json()["detail"]
    forbidden = client.post(f"/v1/jobs/{done.job.id}/retry-failed", headers=team.headers("read"))
    assert forbidden.status_code == 403
    queued, _dispatcher = submit_local(team, spec(documents=2), settings)
    nothing = client.post(f"/v1/jobs/{queued.id}/retry-failed", headers=team.headers("submit"))
    assert nothing.status_code == 200
    assert nothing.json()["status"] == "queued"
