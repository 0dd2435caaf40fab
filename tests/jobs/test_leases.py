"""Leases: a chunk runs each item once, however often its message arrives or its calls last."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.core.db import session_scope
from app.generation.pipeline import ChunkReport, close_thread_resources, run_chunk
from app.jobs import service as jobs
from app.models import Document, WorkItem
from app.models.base import utcnow
from tests.conftest import Team, spec, submit_local, wait_for
from tests.llm_server import FaultConfig, LLMTestServer


def items(job_id: Any) -> dict[int, tuple[str, int, str | None]]:
    """Each item's (state, attempts, lease owner), by index."""
    with session_scope() as session:
        rows = session.execute(
            select(WorkItem.item_index, WorkItem.state, WorkItem.attempts, WorkItem.lease_owner)
            .where(WorkItem.job_id == job_id)
            .order_by(WorkItem.item_index)
        ).all()
    return {row.item_index: (row.state, row.attempts, row.lease_owner) for row in rows}


def document_indices(job_id: Any) -> list[int]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(Document.item_index)
                .where(Document.job_id == job_id)
                .order_by(Document.item_index)
            )
        )


def progress(team: Team, job_id: Any) -> tuple[str, int, int, int, int]:
    """(status, accepted, attempted, planned, LLM calls) from the job's counters."""
    with session_scope() as session:
        view = jobs.view(session, jobs.get_job(session, team.principal, job_id))
    return (
        view.job.status,
        view.progress.accepted,
        view.progress.attempted,
        view.progress.planned,
        view.usage.llm_calls,
    )


def test_a_chunk_redelivered_while_its_job_runs_does_not_rerun_its_done_items(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    # The chunk's message comes back while the job still runs (its worker wrote the items,
    # then died before the late ack): run_chunk does not return early for a running job, so
    # only lease_items' state filter keeps done items from being called and leased again.
    settings = settings.model_copy(update={"chunk_seconds": 0})  # each chunk its own items
    job, dispatcher = submit_local(team, spec(documents=25), settings)
    first = dispatcher.pop()
    assert first == (job.id, 0, 10)
    report = run_chunk(
        *first, worker_id="first", dispatcher=dispatcher, settings=settings, store=store
    )
    assert report.leased == 10
    before = items(job.id)
    # The first worker planned the rest of the window: the job has work left to do.
    states = {index: state for index, (state, _, _) in before.items()}
    assert states == dict.fromkeys(range(10), "done") | dict.fromkeys(range(10, 25), "pending")
    counters = progress(team, job.id)
    assert counters[0] == "running"
    served = llm.state.served

    again = run_chunk(
        *first, worker_id="redelivered", dispatcher=dispatcher, settings=settings, store=store
    )

    assert llm.state.served == served, "done items were sent to the LLM again"
    assert (again.leased, again.written) == (0, 0)
    assert items(job.id) == before, "done items were leased again"
    assert document_indices(job.id) == list(range(10))
    assert progress(team, job.id) == counters

    # The rest of the job runs as usual: every item ran once, one call each.
    while (chunk := dispatcher.pop()) is not None:
        run_chunk(*chunk, worker_id="rest", dispatcher=dispatcher, settings=settings, store=store)
    status, accepted, attempted, planned, calls = progress(team, job.id)
    assert status == "succeeded"
    assert accepted == 25
    assert attempted == planned == calls == len(document_indices(job.id))
    assert {attempts for _state, attempts, _owner in items(job.id).values()} == {1}


@pytest.mark.usefixtures("llm")
def test_a_chunk_with_time_left_runs_its_jobs_next_items_and_plans_more_as_it_goes(
    team: Team, settings: Any, store: Any
) -> None:
    """Free call slots take the job's next pending items instead of idling until the
    chunk's last call returns: one chunk runs a job three windows long, planning as it
    writes, and the chunks it planned find their items done and lease nothing."""
    window = settings.model_copy(update={"plan_ahead_items": 20, "llm_concurrency": 4})
    job, dispatcher = submit_local(team, spec(documents=60), window)
    first = dispatcher.pop()
    assert first == (job.id, 0, 10)
    report = run_chunk(*first, worker_id="busy", dispatcher=dispatcher, settings=window,
                       store=store)  # fmt: skip
    assert report.leased == report.written == 60
    assert report.job_status == "succeeded"
    sent = 0
    while (chunk := dispatcher.pop()) is not None:
        sent += 1
        late = run_chunk(*chunk, worker_id="late", dispatcher=dispatcher, settings=window,
                         store=store)  # fmt: skip
        assert (late.leased, late.written) == (0, 0)
    assert sent >= 4, "the chunk did not plan the job's later windows"
    status, accepted, attempted, planned, calls = progress(team, job.id)
    assert (status, accepted, attempted, planned, calls) == ("succeeded", 60, 60, 60, 60)
    assert {attempts for _state, attempts, _owner in items(job.id).values()} == {1}


@pytest.mark.usefixtures("llm")
def test_a_chunk_out_of_time_runs_only_what_it_holds(team: Team, settings: Any, store: Any) -> None:
    no_time = settings.model_copy(update={"chunk_seconds": 0, "llm_concurrency": 4})
    job, dispatcher = submit_local(team, spec(documents=30), no_time)
    first = dispatcher.pop()
    assert first is not None
    report = run_chunk(*first, worker_id="w", dispatcher=dispatcher, settings=no_time,
                       store=store)  # fmt: skip
    assert (report.leased, report.written) == (10, 10)
    states = {index: state for index, (state, _a, _o) in items(job.id).items()}
    assert states == dict.fromkeys(range(10), "done") | dict.fromkeys(range(10, 30), "pending")


def test_a_call_that_outlives_its_lease_keeps_the_item_leased_by_its_worker(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    # The worker's heartbeat renews its leases while calls run: without it, a call slower
    # than the lease would let the reconciler or another delivery take the item and pay for
    # a second call.
    short = settings.model_copy(update={"lease_seconds": 1.0})
    llm.reset(FaultConfig(hang_seconds=3.0))  # 3 lease periods, well under the client timeout
    llm.faults.script.append("hang")
    job, dispatcher = submit_local(team, spec(documents=1), short)
    chunk = dispatcher.pop()
    assert chunk == (job.id, 0, 1)
    served = llm.state.served
    reports: list[ChunkReport] = []
    errors: list[BaseException] = []

    def slow_worker() -> None:
        try:
            reports.append(
                run_chunk(
                    *chunk, worker_id="slow", dispatcher=dispatcher, settings=short, store=store
                )
            )
        except BaseException as exc:  # reported on the test's thread
            errors.append(exc)
        finally:
            close_thread_resources()

    thread = threading.Thread(target=slow_worker, name="slow-worker")
    thread.start()
    try:
        first_expiry = wait_for(lambda: lease_expiry(job.id, "slow"), timeout=10, interval=0.02)
        # Past the first lease's end, while the call still hangs.
        while utcnow() < first_expiry + timedelta(seconds=0.5):
            time.sleep(0.05)
        renewed = lease_expiry(job.id, "slow")
        assert renewed is not None, f"the slow worker lost its lease: {items(job.id)}"
        assert renewed > first_expiry, "the heartbeat did not move the lease forward"
        assert renewed > utcnow(), "the lease ran out while its call was still running"
        assert thread.is_alive(), "the call did not outlive the lease; the test proves nothing"

        # Another delivery of the chunk finds nothing to lease, and so calls nothing.
        intruder = run_chunk(
            *chunk, worker_id="intruder", dispatcher=dispatcher, settings=short, store=store
        )
        assert intruder.leased == 0
        with session_scope() as session:  # ... and the reconciler expires nothing
            jobs.reconcile_job(session, job.id, dispatcher=dispatcher, settings=short, store=store)
        assert dispatcher.pop() is None
    finally:
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert errors == []
    assert (reports[0].leased, reports[0].written) == (1, 1)
    assert items(job.id) == {0: ("done", 1, None)}
    assert document_indices(job.id) == [0]
    assert llm.state.served - served == 1
    assert progress(team, job.id) == ("succeeded", 1, 1, 1, 1)


def lease_expiry(job_id: Any, owner: str) -> datetime | None:
    """When the item's lease ends, if ``owner`` holds it; else None."""
    with session_scope() as session:
        return session.scalar(
            select(WorkItem.lease_expires_at).where(
                WorkItem.job_id == job_id,
                WorkItem.state == "leased",
                WorkItem.lease_owner == owner,
            )
        )


def test_a_poison_item_is_failed_after_its_attempts_and_the_job_goes_on(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    """An item whose worker dies every time (it crashes the process, say) is leased at most
    PRIORFORGE_MAX_ITEM_ATTEMPTS times; then it is failed with its reason, never run again,
    and the rest of the job completes."""
    from app.jobs import repository

    job, dispatcher = submit_local(team, spec(documents=4), settings)
    # Item 2's worker died mid-call max_item_attempts times: each lease ran out.
    for attempt in range(settings.max_item_attempts):
        then = utcnow() - timedelta(minutes=10 - attempt)
        with session_scope() as session:
            leased = repository.lease_items(
                session, job.id, 2, 3, f"dead-{attempt}", then, then + timedelta(seconds=1)
            )
        assert [lease.attempts for lease in leased] == [attempt + 1]
    served = llm.state.served
    while (chunk := dispatcher.pop()) is not None:
        run_chunk(*chunk, worker_id="w", dispatcher=dispatcher, settings=settings, store=store)
    with session_scope() as session:
        poison = session.execute(
            select(Document.status, Document.reason, Document.detail)
            .where(Document.job_id == job.id, Document.item_index == 2)
        ).one()  # fmt: skip
    assert (poison.status, poison.reason) == ("failed", "attempts_exhausted")
    assert f"lost {settings.max_item_attempts} times" in (poison.detail or "")
    status, accepted, _attempted, planned, _calls = progress(team, job.id)
    assert (status, accepted) == ("succeeded", 4)
    assert llm.state.served - served == planned - 1, "the poison item was not called again"
    assert items(job.id)[2][0] == "failed"
