"""Cancel ends a job honestly: its unrun items say so, and what it accepted stays valid."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from app.core.db import session_scope
from app.generation.context import JobContext
from app.generation.pipeline import ChunkReport, Outcome, document_id, record_outcomes, run_chunk
from app.jobs import repository
from app.jobs import service as jobs
from app.jobs.planner import PlannedItem
from app.models import ContentFingerprint, Document, WorkItem
from app.models.base import utcnow
from tests.conftest import Team, run_local, spec, submit_local
from tests.llm_server import LLMTestServer


def only_document(job_id: Any, index: int) -> Document:
    with session_scope() as session:
        return session.scalars(
            select(Document).where(Document.job_id == job_id, Document.item_index == index)
        ).one()


def test_cancel_marks_unrun_items_and_keeps_the_accepted_texts(
    client: Any, llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    serial = settings.model_copy(update={"llm_concurrency": 1, "chunk_seconds": 0})
    job, dispatcher = submit_local(team, spec(documents=14, dataset="kept"), serial)
    llm.faults.script.extend(["duplicate"])  # item 0's text: a later job will write it again
    first = dispatcher.pop()
    assert first == (job.id, 0, 10)
    run_chunk(*first, worker_id="w", dispatcher=dispatcher, settings=serial, store=store)
    now = utcnow()
    with session_scope() as session:  # a slow worker holds items 10 and 11; 12 and 13 wait
        late = repository.lease_items(
            session, job.id, 10, 12, "slow", now, now + timedelta(seconds=60)
        )

    cancelled = client.post(f"/v1/jobs/{job.id}/cancel", headers=team.headers("submit")).json()
    assert cancelled["status"] == "cancelled"
    progress = cancelled["progress"]
    assert (progress["planned"], progress["attempted"], progress["accepted"]) == (14, 10, 10)
    assert (progress["in_flight"], progress["not_run"]) == (0, 4)
    items = client.get(
        f"/v1/jobs/{job.id}/items", params={"cursor": "9"}, headers=team.headers()
    ).json()["items"]
    assert [(i["index"], i["state"]) for i in items] == [(i, "cancelled") for i in range(10, 14)]

    # The slow worker's result still lands, is counted, and closes its item.
    with session_scope() as session:
        context = JobContext.for_job(jobs.get_job(session, team.principal, job.id), session)
    lost = Outcome(PlannedItem.from_json(late[0].plan), None, exhausted=3)
    record_outcomes(context, [lost], ChunkReport(job_id=job.id), settings.canary_guid)
    after = client.get(f"/v1/jobs/{job.id}", headers=team.headers()).json()["progress"]
    assert (after["attempted"], after["failed"], after["not_run"], after["in_flight"]) == (
        11,
        1,
        3,
        0,
    )
    with session_scope() as session:
        state = session.scalar(
            select(WorkItem.state).where(WorkItem.job_id == job.id, WorkItem.item_index == 10)
        )
    assert state == "failed"

    # Its accepted documents stay in the dataset's dedup index: the same text is a duplicate.
    assert only_document(job.id, 0).status == "accepted"
    llm.faults.script.extend(["duplicate"])
    later = run_local(team, spec(documents=1, dataset="kept", seed=2), serial, store)
    copy = only_document(later.job.id, 0)
    assert (copy.status, copy.reason) == ("duplicate", "exact")
    assert copy.duplicate_of == document_id(job.id, 0)


def test_a_failed_job_still_gives_its_exact_texts_back(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    serial = settings.model_copy(update={"llm_concurrency": 1})
    llm.faults.script.extend(["refuse"])
    failed = run_local(team, spec(documents=2, max_attempts_factor=1), serial, store)
    assert failed.job.status == "failed"
    assert (failed.progress.accepted, failed.progress.not_run) == (1, 0)
    accepted = next(i for i in (0, 1) if only_document(failed.job.id, i).status == "accepted")
    with session_scope() as session:
        claimed = session.scalar(
            select(func.count()).where(
                ContentFingerprint.document_id == document_id(failed.job.id, accepted)
            )
        )
    assert claimed == 0
