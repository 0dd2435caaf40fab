"""Jobs against a rate-limited provider: the shared limiter between the workers and the LLM."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from sqlalchemy import select

from app.core.db import session_scope
from app.generation.pipeline import run_chunk
from app.jobs import service as jobs
from app.jobs.repository import DEFERRED_OWNER
from app.models import WorkItem
from tests.conftest import Team, run_first_chunk, spec, wait_for
from tests.llm_server import FaultConfig, LLMTestServer


def items(job_id: Any) -> list[WorkItem]:
    with session_scope() as session:
        rows = list(session.scalars(select(WorkItem).where(WorkItem.job_id == job_id)))
        session.expunge_all()
        return rows


def limited(settings: Any, **overrides: Any) -> Any:
    return settings.model_copy(update={"llm_rpm": 6000, **overrides})


def test_a_short_retry_after_is_waited_out_and_the_item_succeeds(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    llm.reset(FaultConfig(script=deque(["429"]), retry_after=1.0))
    started = time.monotonic()
    job, _dispatcher = run_first_chunk(team, spec(documents=1), limited(settings), store)
    took = time.monotonic() - started
    rows = items(job.id)
    assert [r.state for r in rows] == ["done"]
    assert took >= 1.0  # the retry came after the Retry-After, not before
    with session_scope() as session:
        view = jobs.view(session, jobs.get_job(session, team.principal, job.id))
    assert view.progress.accepted == 1


def test_a_long_retry_after_gives_the_items_back_until_it_has_passed(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    """With Retry-After 2 s and workers allowed to wait 0.3 s, the chunk's items go back to
    the job (their attempt not counted) instead of a worker sitting on them; the reconciler
    sends them again once the wait is over, and they all succeed."""
    llm.reset(FaultConfig(script=deque(["429"]), retry_after=2.0))
    patient = limited(settings, llm_max_wait_seconds=0.3, llm_concurrency=1)
    job, dispatcher = run_first_chunk(team, spec(documents=3), patient, store)
    given_back = items(job.id)
    assert {r.state for r in given_back} == {"leased"}
    assert {r.lease_owner for r in given_back} == {DEFERRED_OWNER}
    assert {r.attempts for r in given_back} == {0}
    assert all(r.lease_expires_at is not None for r in given_back)

    def reconciled() -> bool:
        with session_scope() as session:
            jobs.reconcile_job(
                session, job.id, dispatcher=dispatcher, settings=patient, store=store
            )
        return bool(dispatcher.backlog())

    wait_for(reconciled, timeout=10, interval=0.25)
    while (chunk := dispatcher.pop()) is not None:
        run_chunk(*chunk, worker_id="w2", dispatcher=dispatcher, settings=patient, store=store)
    done = items(job.id)
    assert {r.state for r in done} == {"done"}
    assert {r.attempts for r in done} == {1}
