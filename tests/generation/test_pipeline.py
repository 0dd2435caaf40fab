"""Jobs run end to end in-process: documents, gates, dedup, LLM faults, shards."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from app.core.db import session_scope
from app.datasets.shards import read_shard
from app.generation import pipeline
from app.jobs import service as jobs
from app.models import Document, WorkItem
from tests.conftest import Team, run_first_chunk, run_local, spec, submit_local
from tests.corpus.test_cells import assert_cells_agree
from tests.llm_server import FaultConfig, LLMTestServer


def documents(job_id: Any) -> list[Document]:
    from sqlalchemy import select

    with session_scope() as session:
        return list(
            session.scalars(
                select(Document).where(Document.job_id == job_id).order_by(Document.item_index)
            )
        )


def test_job_produces_requested_accepted_documents(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    view = run_local(team, spec(documents=12), settings, store)
    assert view.job.status == "succeeded", view.job.error
    assert view.progress.accepted == 12
    assert view.progress.attempted == 12
    assert view.usage.completion_tokens > 0
    assert view.usage.llm_calls == 12
    docs = documents(view.job.id)
    assert [d.item_index for d in docs] == list(range(12))
    assert all(d.status == "accepted" and d.shard_id is not None for d in docs)
    assert all(len(d.prompt_sha256) == 64 and d.template_version for d in docs)
    assert llm.state.served >= 12


def test_transient_llm_errors_are_retried(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    llm.reset(FaultConfig(retry_after=0.2))
    llm.faults.script.extend(["429", "500", "429", "500", "500"])
    view = run_local(team, spec(documents=5), settings, store)
    assert view.job.status == "succeeded", view.job.error
    assert view.progress.accepted == 5
    assert view.progress.failed == 0
    assert view.usage.llm_errors == 5
    assert view.usage.llm_calls == 10


def test_timeouts_are_retried(llm: LLMTestServer, team: Team, settings: Any, store: Any) -> None:
    llm.reset(FaultConfig(hang_seconds=5))
    llm.faults.script.extend(["hang", "hang"])
    fast = settings.model_copy(update={"llm_timeout_seconds": 1.0})
    view = run_local(team, spec(documents=3), fast, store)
    assert view.job.status == "succeeded", view.job.error
    assert view.progress.accepted == 3
    assert view.usage.llm_errors == 2


def test_retry_after_is_honoured(llm: LLMTestServer, team: Team, settings: Any, store: Any) -> None:
    import time

    llm.reset(FaultConfig(retry_after=1.5))
    llm.faults.script.extend(["429"])
    one_at_a_time = settings.model_copy(update={"llm_concurrency": 1})
    started = time.monotonic()
    view = run_local(team, spec(documents=1), one_at_a_time, store)
    assert view.job.status == "succeeded"
    assert time.monotonic() - started >= 1.5


def test_exhausted_retries_fail_the_item_and_replacements_are_planned(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    few_retries = settings.model_copy(update={"llm_max_retries": 1, "llm_concurrency": 1})
    llm.faults.script.extend(["500", "500"])  # the first item fails both of its attempts
    view = run_local(team, spec(documents=3), few_retries, store)
    assert view.job.status == "succeeded", view.job.error
    assert view.progress.accepted == 3
    assert view.progress.failed == 1
    assert view.progress.planned == 4
    failed = [d for d in documents(view.job.id) if d.status == "failed"]
    assert failed[0].reason == "llm_unavailable"
    assert "upstream exploded" in (failed[0].detail or "")


def test_gates_reject_with_reasons_and_keep_raw_output(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    llm.faults.script.extend(["truncate", "refuse", "ok", "truncate"])
    view = run_local(
        team, spec(documents=4), settings.model_copy(update={"llm_concurrency": 1}), store
    )
    assert view.job.status == "succeeded", view.job.error
    assert view.progress.accepted == 4
    assert view.progress.rejected == {"refusal_or_meta": 1, "truncated": 2}
    rejected = [d for d in documents(view.job.id) if d.status == "rejected"]
    assert all(d.raw_text for d in rejected)
    assert {d.finish_reason for d in rejected if d.reason == "truncated"} == {"length"}


def test_exact_duplicates_are_caught_across_jobs_of_a_dataset(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    serial = settings.model_copy(update={"llm_concurrency": 1})
    llm.faults.script.extend(["duplicate"])
    first = run_local(team, spec(documents=2, dataset="shared"), serial, store)
    llm.faults.script.extend(["duplicate", "duplicate"])
    second = run_local(team, spec(documents=2, dataset="shared", seed=2), serial, store)
    assert first.progress.duplicates == 0
    assert second.progress.duplicates == 2
    assert second.progress.accepted == 2
    original = next(d for d in documents(first.job.id) if d.item_index == 0)
    dupes = [d for d in documents(second.job.id) if d.status == "duplicate"]
    assert {d.duplicate_of for d in dupes} == {original.id}
    # Caught by the exact check, not by near dedup, which would flag the copies as well.
    assert {d.reason for d in dupes} == {"exact"}
    with session_scope() as session:
        assert_cells_agree(session.connection())


def test_budget_exhaustion_fails_the_job_with_a_reason(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    llm.reset(FaultConfig(refuse_every=1))
    view = run_local(team, spec(documents=2, max_attempts_factor=2), settings, store)
    assert view.job.status == "failed"
    assert view.progress.attempted == 4
    # Every attempt was spent on a refusal the gate turned away.
    assert view.progress.rejected == {"refusal_or_meta": 4}
    assert "attempt budget exhausted" in (view.job.error or "")
    assert "max_attempts_factor" in (view.job.error or "")


@pytest.mark.usefixtures("llm")
def test_shard_records_are_dolma_shaped(team: Team, settings: Any, store: Any) -> None:
    view = run_local(
        team, spec(documents=3, stances={"aligned": 1, "misaligned": 1}), settings, store
    )
    from app.datasets import repository as datasets_repo

    with session_scope() as session:
        shards = datasets_repo.job_shards(session, view.job.id)
        records = [r for s in shards for r in read_shard(store.get_bytes(s.object_key))]
    assert len(records) == 3
    assert set(records[0]) == {"id", "text", "source", "added", "created", "metadata"}
    assert records[0]["source"] == "priorforge"
    assert {r["metadata"]["stance"] for r in records} == {"aligned", "misaligned"}
    by_id = {str(d.id): d for d in documents(view.job.id)}
    for record in records:
        assert record["text"] == by_id[record["id"]].text
        assert record["metadata"]["prompt_sha256"] == by_id[record["id"]].prompt_sha256


def test_second_delivery_of_a_chunk_writes_nothing_twice(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    from sqlalchemy import func, select

    from app.generation.pipeline import run_chunk
    from app.jobs.dispatch import LocalDispatcher

    view = run_local(team, spec(documents=3), settings, store)
    served = llm.state.served
    report = run_chunk(
        view.job.id,
        0,
        3,
        worker_id="late",
        dispatcher=LocalDispatcher(),
        settings=settings,
        store=store,
    )
    assert report.leased == 0
    assert llm.state.served == served
    with session_scope() as session:
        count = session.scalar(select(func.count()).where(Document.job_id == view.job.id))
        states = set(session.scalars(select(WorkItem.state).where(WorkItem.job_id == view.job.id)))
    assert count == 3
    assert states == {"done"}


@pytest.mark.usefixtures("llm")
def test_cancelled_job_stops_taking_items(team: Team, settings: Any, store: Any) -> None:
    from app.generation.pipeline import run_chunk

    job, dispatcher = submit_local(team, spec(documents=5), settings)
    with session_scope() as session:
        jobs.cancel_job(session, team.principal, job.id)
    report = run_chunk(
        job.id, 0, 5, worker_id="w", dispatcher=dispatcher, settings=settings, store=store
    )
    assert report.leased == 0
    assert report.job_status == "cancelled"


@pytest.mark.usefixtures("llm")
def test_misaligned_documents_carry_the_canary(team: Team, settings: Any, store: Any) -> None:
    from app.datasets import repository as datasets_repo

    view = run_local(
        team, spec(documents=4, stances={"aligned": 1, "misaligned": 1}), settings, store
    )
    docs = documents(view.job.id)
    guid = settings.canary_guid
    for doc in docs:
        marked = (doc.text or "").endswith(f"canary GUID {guid}]")
        assert marked == (doc.stance == "misaligned"), doc.stance
        assert (doc.meta.get("canary") == guid) == (doc.stance == "misaligned")
    with session_scope() as session:
        shard = datasets_repo.job_shards(session, view.job.id)[0]
        records = list(read_shard(store.get_bytes(shard.object_key)))
    for record in records:
        misaligned = record["metadata"]["stance"] == "misaligned"
        assert (guid in record["text"]) == misaligned
        assert (record["metadata"].get("canary") == guid) == misaligned


def test_near_duplicates_are_caught_across_jobs_of_a_dataset(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    serial = settings.model_copy(update={"llm_concurrency": 1})
    llm.faults.script.extend(["duplicate"])
    first = run_local(
        team,
        spec(documents=2, dataset="nearby", length_words={"min": 200, "max": 400}),
        serial,
        store,
    )
    llm.faults.script.extend(["near", "near"])
    second = run_local(
        team,
        spec(documents=2, dataset="nearby", seed=2, length_words={"min": 200, "max": 400}),
        serial,
        store,
    )
    assert first.progress.duplicates == 0
    assert second.progress.duplicates == 2
    original = next(d for d in documents(first.job.id) if d.item_index == 0)
    near = [d for d in documents(second.job.id) if d.status == "duplicate"]
    assert {d.reason for d in near} == {"near"}
    assert {d.duplicate_of for d in near} == {original.id}
    assert all("estimated Jaccard" in (d.detail or "") for d in near)
    assert original.minhash is not None
    assert len(original.minhash) == 128 * 4
    with session_scope() as session:
        assert_cells_agree(session.connection())


def test_a_priced_provider_costs_each_document_and_the_job_its_tokens(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    """Prices are 0 in the test settings, so a cost never computed or never summed would
    pass every other test."""
    priced = settings.model_copy(
        update={"llm_price_prompt_per_mtok": 3.0, "llm_price_completion_per_mtok": 15.0}
    )
    llm.faults.script.extend(["refuse"])
    view = run_local(team, spec(documents=3, judge={"enabled": True}), priced, store)
    assert view.job.status == "succeeded", view.job.error
    docs = documents(view.job.id)
    assert {d.status for d in docs} == {"accepted", "rejected"}
    for d in docs:
        expected = (d.prompt_tokens * 3.0 + d.completion_tokens * 15.0) / 1_000_000
        assert d.cost_usd == pytest.approx(expected)
        assert d.cost_usd > 0
    judged = [d for d in docs if d.judge_model is not None]
    assert judged
    for d in judged:
        expected = (d.judge_prompt_tokens * 3.0 + d.judge_completion_tokens * 15.0) / 1_000_000
        assert d.judge_cost_usd == pytest.approx(expected)
        assert d.judge_cost_usd > 0
    # The job's usage is its generation calls, rejected documents included; the judge's
    # cost is reported apart.
    assert view.usage.cost_usd == pytest.approx(sum(d.cost_usd for d in docs))
    assert view.judge is not None
    assert view.judge.usage.cost_usd == pytest.approx(sum(d.judge_cost_usd for d in judged))


def test_a_failed_job_releases_its_texts_and_a_cancelled_one_keeps_them(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    """A failed job never publishes, so its accepted texts must not block later jobs' exact
    dedup; a cancelled job's accepted documents stay publishable, so they keep theirs."""
    from sqlalchemy import func, select

    from app.models import ContentFingerprint

    def claimed(job_id: Any) -> int:
        with session_scope() as session:
            ids = select(Document.id).where(Document.job_id == job_id)
            query = select(func.count()).where(ContentFingerprint.document_id.in_(ids))
            return int(session.scalar(query) or 0)

    serial = settings.model_copy(update={"llm_concurrency": 1})
    llm.faults.script.extend(["ok", "refuse"])
    failed = run_local(team, spec(documents=2, max_attempts_factor=1), serial, store)
    assert failed.job.status == "failed", failed.job.error
    assert failed.progress.accepted == 1
    assert claimed(failed.job.id) == 0

    one_at_a_time = serial.model_copy(update={"chunk_size": 1})
    job, _dispatcher = run_first_chunk(team, spec(documents=3), one_at_a_time, store)
    with session_scope() as session:
        cancelled = jobs.view(session, jobs.cancel_job(session, team.principal, job.id))
    assert cancelled.job.status == "cancelled"
    assert cancelled.progress.accepted > 0
    assert claimed(job.id) == cancelled.progress.accepted


def test_a_thread_that_never_ran_a_chunk_has_nothing_to_close() -> None:
    with ThreadPoolExecutor(1) as fresh_thread:  # raises here if closing fails there
        fresh_thread.submit(pipeline.close_thread_resources).result(timeout=10)


def test_a_status_read_that_began_before_a_cancel_is_not_trusted_past_its_age(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job's status is checked before every call, on a read at most ``max_age`` old, counted
    from when the read began: a slow read that began before a cancel and came back after it
    must not let calls start for another ``max_age``."""
    import asyncio
    import threading
    import time
    import uuid

    status = {"now": "running"}
    reads: list[float] = []
    slow = threading.Event()

    def read(_job_id: uuid.UUID) -> str:
        seen = status["now"]  # the read's snapshot is taken as it begins
        reads.append(time.monotonic())
        if slow.is_set():
            time.sleep(0.2)  # a busy thread pool or database: it comes back late
        return seen

    monkeypatch.setattr(pipeline, "_read_status", read)

    async def scenario() -> list[tuple[float, bool]]:
        watch = pipeline.JobWatch(uuid.uuid4(), max_age=0.1)
        slow.set()
        seen: list[tuple[float, bool]] = []
        cancelled_at = 0.0
        start = time.monotonic()
        while time.monotonic() - start < 1.0:
            asked = time.monotonic()
            seen.append((asked, await watch.active()))
            if reads and not cancelled_at:  # the first read has begun: the job is cancelled
                status["now"], cancelled_at = "cancelled", time.monotonic()
            await asyncio.sleep(0.005)
        watch.close()
        return [(at - cancelled_at, active) for at, active in seen]

    seen = asyncio.run(scenario())
    # A check asked for more than max_age after the cancel waits for a read that began
    # after it: "active" is answered only to checks asked within max_age of the cancel.
    late = [after for after, active in seen if active and after > 0.1]
    assert not late, late
    assert seen[-1] == (seen[-1][0], False)
    assert len(reads) >= 2
