"""The reconciler recovers items whose worker or message was lost."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from app.core.db import session_scope
from app.generation.pipeline import run_chunk
from app.jobs import repository
from app.jobs import service as jobs
from app.jobs.dispatch import LocalDispatcher
from app.models import Job, Shard, WorkItem
from app.models.base import utcnow
from tests.conftest import Team, spec, submit_local


def submit(team: Team, settings: Any, documents: int) -> tuple[Any, LocalDispatcher]:
    job, dispatcher = submit_local(team, spec(documents=documents), settings)
    return job, dispatcher


def drain(dispatcher: LocalDispatcher) -> list[tuple[Any, int, int]]:
    chunks = []
    while (chunk := dispatcher.pop()) is not None:
        chunks.append(chunk)
    return chunks


def reconcile(job_id: Any, dispatcher: LocalDispatcher, settings: Any, store: Any) -> None:
    with session_scope() as session:
        jobs.reconcile_job(session, job_id, dispatcher=dispatcher, settings=settings, store=store)


def test_lost_messages_are_redispatched_once_the_job_stalls(
    team: Team, settings: Any, store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    quick = settings.model_copy(update={"stall_seconds": 0.5, "reconcile_interval_seconds": 0.1})
    job, dispatcher = submit(team, quick, documents=25)
    # The submission plans one chunk (its first worker would plan the rest); its message is
    # "lost": nobody runs it.
    assert drain(dispatcher) == [(job.id, 0, 10)]
    reconcile(job.id, dispatcher, quick, store)
    assert drain(dispatcher) == []  # not stalled yet
    time.sleep(0.6)
    with caplog.at_level(logging.WARNING, "app.jobs.service"):
        reconcile(job.id, dispatcher, quick, store)
    assert drain(dispatcher) == [(job.id, 0, 10)]
    assert caplog.messages == [f"job {job.id}: re-dispatching 10 items (expired leases: 0)"]
    reconcile(job.id, dispatcher, quick, store)
    assert drain(dispatcher) == []  # just re-sent: not again until another stall window


def enqueued_at(job_id: Any) -> dict[int, Any]:
    with session_scope() as session:
        rows = session.execute(
            select(WorkItem.item_index, WorkItem.enqueued_at).where(WorkItem.job_id == job_id)
        ).all()
    return {row.item_index: row.enqueued_at for row in rows}


def test_redispatched_items_are_marked_enqueued_and_not_resent_by_the_next_pass(
    team: Team, settings: Any, store: Any
) -> None:
    # The reconcile claim throttles passes, which hides a re-dispatch that forgets to stamp
    # enqueued_at: the pass after the throttle would send the same items again, every
    # interval, for as long as the job stalls. A cap of 4 items per pass tells the items
    # re-sent apart from those still waiting their turn.
    quick = settings.model_copy(
        update={
            "stall_seconds": 1.0,
            "reconcile_interval_seconds": 0.1,
            "stall_redispatch_max_items": 4,
        }
    )
    job, dispatcher = submit(team, quick, documents=10)
    assert drain(dispatcher) == [(job.id, 0, 10)]  # "lost": nobody runs it
    submitted = enqueued_at(job.id)
    time.sleep(quick.stall_seconds + 0.1)
    before_pass = utcnow()
    reconcile(job.id, dispatcher, quick, store)
    assert drain(dispatcher) == [(job.id, 0, 4)]
    stamped = enqueued_at(job.id)
    assert all(stamped[index] >= before_pass for index in range(4)), "re-sent, not marked"
    assert {index: stamped[index] for index in range(4, 10)} == {
        index: submitted[index] for index in range(4, 10)
    }

    time.sleep(quick.reconcile_interval_seconds)  # past the throttle, within the stall window
    reconcile(job.id, dispatcher, quick, store)
    assert drain(dispatcher) == [(job.id, 4, 8)]  # the next oldest, not the ones just sent


@pytest.mark.usefixtures("llm")
def test_expired_leases_return_to_pending_and_are_redispatched(
    team: Team, settings: Any, store: Any
) -> None:
    job, dispatcher = submit(team, settings, documents=4)
    drain(dispatcher)
    now = utcnow()
    with session_scope() as session:  # a worker leased items 0-1, then died
        leased = repository.lease_items(
            session, job.id, 0, 2, "dead", now, now + timedelta(seconds=60)
        )
        session.execute(update(Job).where(Job.id == job.id).values(status="running"))
    assert [item.index for item in leased] == [0, 1]
    reconcile(job.id, dispatcher, settings, store)
    assert drain(dispatcher) == []  # the lease is still live
    with session_scope() as session:  # ... and its lease ran out
        session.execute(
            update(WorkItem)
            .where(WorkItem.job_id == job.id, WorkItem.state == "leased")
            .values(lease_expires_at=now - timedelta(seconds=1))
        )
    time.sleep(settings.reconcile_interval_seconds)
    reconcile(job.id, dispatcher, settings, store)
    chunks = drain(dispatcher)
    assert chunks == [(job.id, 0, 2)]
    for chunk_job, start, end in chunks + [(job.id, 2, 4)]:
        run_chunk(
            chunk_job,
            start,
            end,
            worker_id="new",
            dispatcher=dispatcher,
            settings=settings,
            store=store,
        )
    with session_scope() as session:
        view = jobs.view(session, jobs.get_job(session, team.principal, job.id))
    assert view.job.status == "succeeded"
    assert view.progress.accepted == 4


def test_messages_waiting_in_a_backlog_are_not_resent(
    team: Team, settings: Any, store: Any
) -> None:
    quick = settings.model_copy(update={"stall_seconds": 0.2, "reconcile_interval_seconds": 0.05})
    job, dispatcher = submit(team, quick, documents=5)
    time.sleep(0.3)
    reconcile(job.id, dispatcher, quick, store)
    assert drain(dispatcher) == [(job.id, 0, 5)]  # the original message only: it was waiting


@pytest.mark.usefixtures("llm")
def test_a_job_whose_spec_no_longer_resolves_fails_with_the_reason(
    team: Team, settings: Any, store: Any
) -> None:
    job, dispatcher = submit(team, settings, documents=3)
    with session_scope() as session:
        stored = session.get(Job, job.id)
        assert stored is not None
        stored.spec = stored.spec | {"surface_forms": ["retired_genre"]}
    report = run_chunk(
        job.id, 0, 3, worker_id="w", dispatcher=dispatcher, settings=settings, store=store
    )
    assert report.job_status == "failed"
    with session_scope() as session:
        failed = jobs.get_job(session, team.principal, job.id)
    assert failed.status == "failed"
    assert "retired_genre" in (failed.error or "")


@pytest.mark.usefixtures("llm")
def test_a_job_cancelled_while_publishing_publishes_nothing(
    team: Team, settings: Any, store: Any
) -> None:
    from app.datasets import repository as datasets_repo

    job, dispatcher = submit(team, settings, documents=3)

    class CancelDuringUpload:
        """Passes writes through, cancelling the job as the first shard lands."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def put_file(self, key: str, source: Any) -> Any:
            with session_scope() as session:
                jobs.cancel_job(session, team.principal, job.id)
            return self.inner.put_file(key, source)

    for chunk_job, start, end in drain(dispatcher):
        run_chunk(
            chunk_job,
            start,
            end,
            worker_id="w",
            dispatcher=dispatcher,
            settings=settings,
            store=CancelDuringUpload(store),
        )
    with session_scope() as session:
        final = jobs.view(session, jobs.get_job(session, team.principal, job.id))
        assert final.job.status == "cancelled"
        assert final.progress.accepted == 3
        assert list(datasets_repo.job_shards(session, job.id)) == []


@pytest.mark.usefixtures("llm")
def test_a_job_cancelled_after_its_last_upload_publishes_nothing(
    team: Team, settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file uploaded and the claim renewed after each: the cancel lands while the shard
    rows are being added, so only the guarded status change can notice, and the rows must be
    rolled back with it."""
    from app.datasets import repository as datasets_repo

    job, dispatcher = submit(team, settings, documents=3)
    assign = datasets_repo.assign_shard

    def assign_then_cancel(session: Any, shard_id: Any, document_ids: Any) -> None:
        assign(session, shard_id, document_ids)
        with session_scope() as other:
            jobs.cancel_job(other, team.principal, job.id)

    monkeypatch.setattr(datasets_repo, "assign_shard", assign_then_cancel)
    reports = [
        run_chunk(
            chunk_job, start, end, worker_id="w", dispatcher=dispatcher, settings=settings,
            store=store,
        )
        for chunk_job, start, end in drain(dispatcher)
    ]  # fmt: skip
    assert reports[-1].job_status == "cancelled"  # what the finalizing chunk reports
    with session_scope() as session:
        final = jobs.view(session, jobs.get_job(session, team.principal, job.id))
        assert final.job.status == "cancelled"
        assert final.progress.accepted == 3
        assert list(datasets_repo.job_shards(session, job.id)) == []


def test_a_job_a_worker_touched_lately_is_not_stalled_and_a_pass_is_not_repeated_at_once(
    team: Team, settings: Any, store: Any
) -> None:
    quick = settings.model_copy(update={"stall_seconds": 5.0, "reconcile_interval_seconds": 0.2})
    job, dispatcher = submit(team, quick, documents=10)
    assert drain(dispatcher) == [(job.id, 0, 10)]  # "lost"
    long_ago = utcnow() - timedelta(seconds=60)
    with session_scope() as session:  # sent long ago, but a worker touched the job just now
        repository.mark_enqueued(session, job.id, list(range(10)), long_ago)
        repository.touch_job(session, job.id, utcnow())
    reconcile(job.id, dispatcher, quick, store)
    assert drain(dispatcher) == []
    with session_scope() as session:
        claimed = session.scalar(select(Job.reconciled_at).where(Job.id == job.id))
        repository.touch_job(session, job.id, long_ago)  # now nobody has touched it for long
    reconcile(job.id, dispatcher, quick, store)  # within the interval: this pass is skipped
    assert drain(dispatcher) == []
    with session_scope() as session:
        assert session.scalar(select(Job.reconciled_at).where(Job.id == job.id)) == claimed
    time.sleep(quick.reconcile_interval_seconds)
    reconcile(job.id, dispatcher, quick, store)
    assert drain(dispatcher) == [(job.id, 0, 10)]


def test_a_job_touched_exactly_one_stall_window_ago_is_not_stalled_yet(
    team: Team, settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, dispatcher = submit(team, settings, documents=10)
    assert drain(dispatcher) == [(job.id, 0, 10)]  # "lost"
    now = utcnow()
    with session_scope() as session:
        repository.mark_enqueued(session, job.id, list(range(10)), now - timedelta(hours=1))
        repository.touch_job(session, job.id, now - timedelta(seconds=settings.stall_seconds))
    monkeypatch.setattr(jobs, "utcnow", lambda: now)
    reconcile(job.id, dispatcher, settings, store)
    assert drain(dispatcher) == []


@pytest.mark.usefixtures("llm")
def test_the_reconciler_moves_on_a_job_whose_worker_died_before_doing_so(
    team: Team, settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that wrote its chunk's documents and died before advance_job: the next
    pass plans what is still wanted, and finishes the job once it has everything."""
    small = settings.model_copy(update={"chunk_size": 2, "plan_ahead_items": 2})
    job, dispatcher = submit(team, small, documents=4)

    def run_and_die(chunk: tuple[Any, int, int]) -> None:
        with monkeypatch.context() as dying:
            dying.setattr(jobs, "advance_job", lambda *_args, **_kwargs: "running")
            run_chunk(*chunk, worker_id="w", dispatcher=dispatcher, settings=small, store=store)

    def next_pass() -> str:
        with session_scope() as session:
            session.execute(update(Job).where(Job.id == job.id).values(reconciled_at=None))
        reconcile(job.id, dispatcher, small, store)
        with session_scope() as session:
            return session.scalars(select(Job.status).where(Job.id == job.id)).one()

    [first] = drain(dispatcher)
    run_and_die(first)
    assert next_pass() == "running"
    [second] = drain(dispatcher)
    assert second == (job.id, 2, 4)
    run_and_die(second)
    assert next_pass() == "succeeded"
    with session_scope() as session:
        published = session.scalars(select(Shard.records).where(Shard.job_id == job.id)).all()
    assert sum(published) == 4
