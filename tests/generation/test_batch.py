"""Batch mode: a job's items go through the provider's Batch API as files and come back
through the same gates and dedup, at the batch price; expired requests are sent again."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.core.settings import get_settings
from app.llm.batch import read_results, request_line, split_files
from app.models import Document, LlmBatch
from tests.conftest import Team, run_local, spec
from tests.llm_server import FaultConfig, LLMTestServer

PRICED = {"llm_price_prompt_per_mtok": 2.0, "llm_price_completion_per_mtok": 8.0}
BATCH = {"llm_batch_api": True, "batch_poll_seconds": 0.2} | PRICED


def test_request_files_keep_within_the_batch_apis_limits() -> None:
    lines = [request_line(str(i), {"model": "m", "messages": [], "n": "x" * 50}) for i in range(10)]
    assert json.loads(lines[0]) == {
        "custom_id": "0",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [], "n": "x" * 50},
    }
    assert [len(f) for f in split_files(lines, max_requests=4)] == [4, 4, 2]
    by_size = split_files(lines, max_bytes=3 * len(lines[0]))
    assert [len(f) for f in by_size] == [3, 3, 3, 1]
    assert b"".join(b"".join(f) for f in by_size) == b"".join(lines)  # in order, none lost
    with pytest.raises(ValueError, match="over a batch file's limit"):
        split_files(lines, max_bytes=10)


def test_results_and_errors_are_matched_on_custom_id() -> None:
    ok = {"id": "c", "choices": []}
    output = b"\n".join(
        json.dumps(line).encode()
        for line in (
            {"custom_id": "3", "response": {"status_code": 200, "body": ok}, "error": None},
            {"custom_id": "1", "response": {"status_code": 500, "body": {}}, "error": None},
        )
    )
    errors = json.dumps(
        {"custom_id": "2", "response": None, "error": {"code": "batch_expired"}}
    ).encode()
    results = read_results(output + b"\n\nnot json\n", errors)
    assert results.completions == {"3": ok}
    assert results.errors == {"1": "http_500", "2": "batch_expired"}


@pytest.mark.timeout(300)
def test_a_batch_job_of_2000_documents_survives_expired_requests_at_the_batch_price(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    llm.reset(FaultConfig(batch_seconds=0.2, batch_expire_fraction=0.01))
    batched = settings.model_copy(update=BATCH)
    raw = spec(documents=2000, batch=True, length_words={"min": 40, "max": 80})
    view = run_local(team, raw, batched, store, timeout=240)
    assert view.job.status == "succeeded", view.job.error
    assert view.progress.accepted == 2000

    sent = Counter(llm.state.batch_requests)
    with session_scope() as session:
        batches = session.scalars(select(LlmBatch).where(LlmBatch.job_id == view.job.id)).all()
        documents = session.execute(
            select(Document.item_index, Document.status, Document.prices_version,
                   Document.prompt_tokens, Document.completion_tokens, Document.cost_usd)
            .where(Document.job_id == view.job.id)
        ).all()  # fmt: skip
        sharded = session.scalar(
            select(func.count()).where(
                Document.job_id == view.job.id, Document.shard_id.is_not(None)
            )
        )
    # Some requests expired, were read from the error files and sent again in later batches.
    expired = sum(b.outcome["errors"].get("batch_expired", 0) for b in batches if b.outcome)
    assert expired > 0
    assert sum(b.outcome["resent"] for b in batches if b.outcome) == expired
    assert {b.status for b in batches} == {"done"}
    assert sum(sent.values()) == len(documents) + expired
    # One document per item, none doubled, every accepted one published.
    assert len(documents) == len({d.item_index for d in documents}) == view.progress.planned
    assert sum(d.status == "accepted" for d in documents) == 2000 == sharded
    # Billed at half the price, under the batch price version.
    assert {d.prices_version for d in documents} == {"settings/batch"}
    for d in documents:
        full = (d.prompt_tokens * 2.0 + d.completion_tokens * 8.0) / 1e6
        assert d.cost_usd == pytest.approx(full / 2)
    assert view.usage.cost_usd == pytest.approx(sum(d.cost_usd for d in documents))


def test_batch_needs_a_provider_that_takes_batches_and_no_judge(
    client: Any, team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = client.post("/v1/jobs", json=spec(batch=True), headers=team.headers("submit"))
    assert refused.status_code == 409, refused.text
    assert "does not take batches" in refused.json()["detail"]
    monkeypatch.setattr(get_settings(), "llm_batch_api", True)
    judged = spec(batch=True, judge={"enabled": True})
    refused = client.post("/v1/jobs", json=judged, headers=team.headers("submit"))
    assert refused.status_code == 409
    assert "judge" in refused.json()["detail"]
    assert (
        client.post("/v1/jobs", json=spec(batch=True), headers=team.headers("submit")).status_code
        == 202
    )


def test_a_cancelled_jobs_open_batches_are_cancelled_at_the_provider(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    """Nothing would read the results of an ended job's batches: they are cancelled at the
    provider (no more spend), and their rows say so."""
    from app.generation import batching
    from app.generation.pipeline import run_chunk
    from app.jobs import service as jobs
    from tests.conftest import submit_local

    llm.reset(FaultConfig(batch_seconds=600))  # the batch is still running when we cancel
    batched = settings.model_copy(update=BATCH)
    job, dispatcher = submit_local(team, spec(documents=5, batch=True), batched)
    chunk = dispatcher.pop()
    assert chunk is not None
    report = run_chunk(*chunk, worker_id="w", dispatcher=dispatcher, settings=batched, store=store)
    assert report.batched == 5
    with session_scope() as session:
        [row] = session.scalars(select(LlmBatch).where(LlmBatch.job_id == job.id)).all()
        assert row.status == "submitted"
        jobs.cancel_job(session, team.principal, job.id)
    assert batching.cancel_ended(batched) == 1
    assert llm.state.batches[str(row.provider_batch_id)]["status"] == "cancelled"
    with session_scope() as session:
        stored = session.get(LlmBatch, row.id)
        assert stored is not None
        assert stored.status == "cancelled"
    assert batching.cancel_ended(batched) == 0  # once
