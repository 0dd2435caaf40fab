"""Jobs with ``batch``: their items go to the provider's Batch API as files, and come back.

A chunk's leased items are rendered into one batch file (or more, within the Batch API's
limits), recorded as an ``llm_batch`` row that holds their leases, and sent. Every
reconciler pass polls the job's open batches; a finished one has its output and error files
read, and its results go through the same gates, dedup and recording as online calls, at the
batch price under the price version ``<version>/batch``. Requests that expired or failed are
sent again in a later batch, up to ``PRIORFORGE_MAX_ITEM_ATTEMPTS``, then failed with their
reason. A document is written once per item whatever arrives twice.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

import openai

from app.core.db import session_scope
from app.core.settings import Settings
from app.generation.context import JobContext
from app.generation.pipeline import ChunkReport, Outcome, evaluate, record_outcomes
from app.jobs import repository
from app.jobs import service as jobs
from app.jobs.dispatch import Dispatcher
from app.jobs.planner import PlannedItem
from app.llm import batch as files
from app.llm.client import completion_from_body
from app.llm.provider import ProviderConfig
from app.models import LlmBatch
from app.models.base import utcnow
from app.storage import ObjectStore

log = logging.getLogger(__name__)

# A batch holds its items' leases this long: the provider's window and a margin.
HOLD = timedelta(hours=25)
# A batch row whose provider call never came back (its worker died in between).
STALE_CREATING = timedelta(minutes=10)
OWNER_PREFIX = "batch:"


def _client(provider: ProviderConfig) -> openai.OpenAI:
    # The one retry layer for batch calls is the poll: a failed poll is tried again next pass.
    return openai.OpenAI(
        base_url=provider.base_url,
        api_key=provider.api_key,
        timeout=provider.timeout_seconds,
        max_retries=0,
    )


def _body(context: JobContext, item: PlannedItem, model: str) -> dict[str, Any]:
    sampling = context.spec.sampling
    return {
        "model": model,
        "messages": context.render(item).messages,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "seed": item.sampling_seed,
        "frequency_penalty": sampling.frequency_penalty,
        "presence_penalty": sampling.presence_penalty,
    }


def submit(
    context: JobContext,
    items: list[PlannedItem],
    worker_id: str,
    settings: Settings,
    report: ChunkReport,
) -> None:
    """Send the chunk's leased items as batch files; their leases pass to the batches."""
    provider = context.provider(settings)
    model = context.spec.model or provider.model
    lines = [files.request_line(str(item.index), _body(context, item, model)) for item in items]
    start = 0
    for part in files.split_files(lines):
        indices = [item.index for item in items[start : start + len(part)]]
        start += len(part)
        _submit_file(context, provider, indices, b"".join(part), worker_id)
        report.batched += len(indices)


def _submit_file(
    context: JobContext,
    provider: ProviderConfig,
    indices: list[int],
    data: bytes,
    worker_id: str,
) -> None:
    now = utcnow()
    row = LlmBatch(
        id=uuid.uuid4(), job_id=context.job_id, status="creating", indices=indices,
        requests=len(indices), created_at=now,
    )  # fmt: skip
    with session_scope() as session:
        session.add(row)
        repository.transfer_leases(
            session, context.job_id, indices, worker_id, f"{OWNER_PREFIX}{row.id}", now + HOLD
        )
    client = _client(provider)
    try:
        uploaded = client.files.create(file=(f"{row.id}.jsonl", data), purpose="batch")
        created = client.batches.create(
            input_file_id=uploaded.id,
            endpoint=files.ENDPOINT,
            completion_window=files.COMPLETION_WINDOW,
            metadata={"priorforge_batch": str(row.id), "priorforge_job": str(context.job_id)},
        )
    except openai.APIError as exc:
        # Nothing was queued at the provider: the items go back to their job, unspent.
        log.warning("job %s: sending batch %s failed: %s", context.job_id, row.id, exc)
        _close(row.id, "failed", error=f"{type(exc).__name__}: {exc}", release=True)
        return
    finally:
        client.close()
    with session_scope() as session:
        stored = session.get(LlmBatch, row.id)
        assert stored is not None
        stored.status = "submitted"
        stored.provider_batch_id = created.id
        stored.input_file_id = uploaded.id
        stored.provider_status = created.status
    log.info("job %s: batch %s sent as %s (%d requests)", context.job_id, row.id, created.id,
             len(indices))  # fmt: skip


def _close(
    batch_id: uuid.UUID,
    status: str,
    *,
    error: str | None = None,
    release: bool = False,
    outcome: dict[str, Any] | None = None,
) -> list[int]:
    """End a batch row; with ``release``, its items still held go back to pending."""
    with session_scope() as session:
        row = session.get(LlmBatch, batch_id)
        assert row is not None
        row.status, row.error, row.outcome, row.finished_at = status, error, outcome, utcnow()
        if not release:
            return []
        return repository.release_leases(
            session, row.job_id, row.indices, f"{OWNER_PREFIX}{row.id}", utcnow()
        )


def poll(
    job_id: uuid.UUID,
    *,
    dispatcher: Dispatcher,
    settings: Settings,
    store: ObjectStore,
) -> int:
    """Poll the job's batches that are due; record those that finished. Returns how many
    finished. Safe from any number of workers: each poll claims its batch first."""
    now = utcnow()
    with session_scope() as session:
        stale = repository.stale_creating_batches(session, job_id, now - STALE_CREATING)
        due = repository.claim_due_batches(
            session, job_id, now, now - timedelta(seconds=settings.batch_poll_seconds)
        )
    for batch_id in stale:
        released = _close(batch_id, "failed", error="never confirmed sent", release=True)
        _dispatch(job_id, released, dispatcher, settings)
    finished = 0
    for row in due:
        try:
            finished += _poll_one(row, dispatcher=dispatcher, settings=settings, store=store)
        except openai.APIError as exc:  # the provider is down: the next pass asks again
            log.warning("job %s: polling batch %s failed: %s", job_id, row.id, exc)
    return finished


def _poll_one(
    row: LlmBatch, *, dispatcher: Dispatcher, settings: Settings, store: ObjectStore
) -> int:
    with session_scope() as session:
        job = repository.get_job(session, row.job_id)
        if job is None:
            return 0
        context = JobContext.for_job(job, session, decontaminate=True)
    provider = context.provider(settings)
    client = _client(provider)
    try:
        found = client.batches.retrieve(str(row.provider_batch_id))
        _set_provider_status(row.id, found.status)
        if found.status not in files.TERMINAL:
            return 0
        output = client.files.content(found.output_file_id).read() if found.output_file_id else None
        errors = client.files.content(found.error_file_id).read() if found.error_file_id else None
    finally:
        client.close()
    results = files.read_results(output, errors)
    report = ChunkReport(job_id=row.job_id)
    retry = _record_results(context, row, results, provider, settings, report)
    outcome = {
        "provider_status": found.status,
        "completed": len(results.completions),
        "errors": dict(_count(results.errors.values())),
        "resent": len(retry),
        "written": report.written,
    }
    released = _close(row.id, "done", outcome=outcome, release=bool(retry))
    _dispatch(row.job_id, released, dispatcher, settings)
    log.info("job %s: batch %s %s: %s", row.job_id, row.id, found.status, outcome)
    with session_scope() as session:
        jobs.advance_job(session, row.job_id, dispatcher=dispatcher, settings=settings, store=store)
    return 1


def _record_results(
    context: JobContext,
    row: LlmBatch,
    results: files.BatchResults,
    provider: ProviderConfig,
    settings: Settings,
    report: ChunkReport,
) -> list[int]:
    """Write the batch's outcomes; the items to send again (their leases are released)."""
    with session_scope() as session:
        held = repository.items_held_by(session, row.job_id, row.indices, f"{OWNER_PREFIX}{row.id}")
    model = context.spec.model or provider.model
    billed = provider.batched()
    outcomes: list[Outcome] = []
    retry: list[int] = []
    for lease in held:
        item = PlannedItem.from_json(lease.plan)
        rendered = context.render(item)
        body = results.completions.get(str(item.index))
        reason = results.errors.get(str(item.index), "batch_missing")
        if body is not None:
            try:
                completion = completion_from_body(body, model)
            except ValueError:
                reason = "malformed_response"
            else:
                values = evaluate(context, item, (rendered, completion, billed, model))
                outcomes.append(Outcome(item, values))
                continue
        if lease.attempts < settings.max_item_attempts:
            retry.append(item.index)
            continue
        outcomes.append(Outcome(item, {
            "status": "failed", "reason": reason, "model": model,
            "detail": f"not completed in {lease.attempts} batches; the last said {reason}",
            "prompt_sha256": rendered.sha256, "template_version": rendered.template_version,
        }))  # fmt: skip
    if outcomes:
        record_outcomes(context, outcomes, report, settings.canary_guid)
    return retry


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _set_provider_status(batch_id: uuid.UUID, status: str) -> None:
    with session_scope() as session:
        row = session.get(LlmBatch, batch_id)
        if row is not None:
            row.provider_status = status


def _dispatch(
    job_id: uuid.UUID, indices: list[int], dispatcher: Dispatcher, settings: Settings
) -> None:
    if not indices:
        return
    with session_scope() as session:
        repository.mark_enqueued(session, job_id, indices, utcnow())
    from app.jobs.dispatch import chunk_ranges

    for start, end in chunk_ranges(indices, settings.chunk_size):
        dispatcher.dispatch(job_id, start, end)
