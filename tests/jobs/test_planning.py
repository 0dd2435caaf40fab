"""Jobs plan their items in a window of ``plan_ahead_items``, topped up as chunks finish."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select

from app.core.db import session_scope
from app.generation.context import JobContext
from app.generation.pipeline import run_chunk
from app.jobs import service as jobs
from app.models import Job, WorkItem
from tests.conftest import Team, run_local, spec, submit_local
from tests.llm_server import FaultConfig, LLMTestServer


def unfinished_items(job_id: Any) -> int:
    with session_scope() as session:
        count = session.scalar(
            select(func.count()).where(
                WorkItem.job_id == job_id, WorkItem.state.in_(("pending", "leased"))
            )
        )
    return int(count or 0)


def test_a_job_plans_a_window_at_a_time_and_finishes(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    window = settings.model_copy(update={"plan_ahead_items": 5})
    served = llm.state.served
    job, dispatcher = submit_local(team, spec(documents=20), window)
    planned: list[int] = []
    while True:
        with session_scope() as session:
            view = jobs.view(session, jobs.get_job(session, team.principal, job.id))
        planned.append(view.progress.planned)
        if view.job.status in ("queued", "running"):
            assert view.progress.in_flight <= 5
            assert view.progress.in_flight == unfinished_items(job.id)
        chunk = dispatcher.pop()
        if chunk is None:
            break
        run_chunk(*chunk, worker_id="w", dispatcher=dispatcher, settings=window, store=store)
    assert view.job.status == "succeeded", view.job.error
    assert (view.progress.accepted, view.progress.attempted) == (20, 20)
    assert planned[0] == 5
    assert planned == sorted(planned)
    assert planned[-1] == 20
    assert llm.state.served - served == 20


def test_the_embedded_runner_finishes_a_job_larger_than_the_window(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    llm.faults.script.extend(["truncate", "ok", "truncate"])
    window = settings.model_copy(update={"plan_ahead_items": 4, "llm_concurrency": 1})
    view = run_local(team, spec(documents=15), window, store)
    assert view.job.status == "succeeded", view.job.error
    assert view.progress.accepted == 15
    assert view.progress.rejected == {"truncated": 2}
    assert view.progress.planned == view.progress.attempted == 17
    assert (view.progress.in_flight, view.progress.not_run) == (0, 0)


def test_the_attempt_budget_still_ends_a_job_planned_in_windows(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    llm.reset(FaultConfig(refuse_every=1))
    window = settings.model_copy(update={"plan_ahead_items": 3})
    view = run_local(team, spec(documents=4, max_attempts_factor=2), window, store)
    assert view.job.status == "failed"
    assert "attempt budget exhausted" in (view.job.error or "")
    assert view.progress.planned == view.progress.attempted == 8
    assert view.progress.rejected == {"refusal_or_meta": 8}


def test_a_submission_plans_one_chunk_and_the_first_worker_plans_the_window_as_it_calls(
    llm: LLMTestServer, team: Team, settings: Any, store: Any, monkeypatch: Any
) -> None:
    llm.reset(FaultConfig(latency=0.3))
    # Chunks of 10 in tests; the chunk leases more of the job for a second.
    window = settings.model_copy(update={"plan_ahead_items": 40, "chunk_seconds": 1})
    job, dispatcher = submit_local(team, spec(documents=100), window)
    first = dispatcher.pop()
    assert first == (job.id, 0, 10)
    assert dispatcher.pop() is None
    planning: list[tuple[int, int]] = []  # (items planned, LLM requests arrived) at each plan
    advance = jobs.advance_job

    def watched(session: Any, job_id: Any, **kwargs: Any) -> str:
        with session_scope() as other:
            planned = other.scalar(select(Job.planned_items).where(Job.id == job_id))
        # The first plan waits for the chunk's first call: one that must wait for the plan
        # never comes.
        deadline = time.monotonic() + 5
        while not planning and not llm.state.arrivals and time.monotonic() < deadline:
            time.sleep(0.01)
        planning.append((int(planned or 0), len(llm.state.arrivals)))
        return advance(session, job_id, **kwargs)

    monkeypatch.setattr(jobs, "advance_job", watched)
    run_chunk(*first, worker_id="w", dispatcher=dispatcher, settings=window, store=store)
    # The window was planned while the chunk's first calls ran, not before them...
    assert planning[0][0] == 10
    assert planning[0][1] > 0
    # ...and its chunks sent to the job's other workers.
    sent = []
    while (chunk := dispatcher.pop()) is not None:
        sent.append(chunk[1:])
    assert sent[:3] == [(10, 20), (20, 30), (30, 40)]


def test_of_two_workers_topping_up_one_window_only_the_first_plans(
    team: Team, settings: Any
) -> None:
    window = settings.model_copy(update={"plan_ahead_items": 20})  # chunks of 10 in tests
    job, dispatcher = submit_local(team, spec(documents=100), window)
    assert dispatcher.pop() == (job.id, 0, 10)
    with session_scope() as session:
        mine = session.get(Job, job.id)  # read by this worker: 10 items planned
        assert mine is not None
        context = JobContext.for_job(mine, session)
        with session_scope() as other:  # another worker reads the same row and plans first
            theirs = other.get(Job, job.id)
            assert theirs is not None
            jobs._plan_more(other, theirs, context, 10, dispatcher, window, in_flight=0)
        jobs._plan_more(session, mine, context, 10, dispatcher, window, in_flight=0)
    assert dispatcher.pop() == (job.id, 10, 20)
    assert dispatcher.pop() is None
    with session_scope() as session:
        assert session.scalar(select(Job.planned_items).where(Job.id == job.id)) == 20
        assert session.scalar(select(func.count()).where(WorkItem.job_id == job.id)) == 20
