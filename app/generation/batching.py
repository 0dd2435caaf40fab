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
from collections import Counter
from datetime import timedelta
from typing import Any

import openai
from pydantic import ValidationError

from app.core.db import session_scope
from app.core.errors import PriorForgeError
from app.core.settings import Settings
from app.generation.context import JobContext
from app.generation.pipeline import ChunkReport, Outcome, evaluate, record_outcomes
from app.jobs import repository
from app.jobs import service as jobs
from app.jobs.dispatch import Dispatcher
from app.jobs.planner import PlannedItem
from app.jobs.spec import JobSpec
from app.llm import batch as files
from app.llm.client import completion_from_body
from app.llm.provider import ProviderConfig, resolve_provider
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
        numbered = dict(zip((item.index for item in items[start:]), part, strict=False))
        start += len(part)
        report.batched += _submit_file(context, provider, numbered, worker_id)


def _submit_file(
    context: JobContext,
    provider: ProviderConfig,
    lines: dict[int, bytes],
    worker_id: str,
) -> int:
    """Send one file of request lines (by item); the number of requests sent."""
    now = utcnow()
    batch_id = uuid.uuid4()
    owner = f"{OWNER_PREFIX}{batch_id}"
    with session_scope() as session:
        # Only the items still ours go in the file (a lease may have run out meanwhile).
        held = repository.transfer_leases(
            session, context.job_id, sorted(lines), worker_id, owner, now + HOLD
        )
        if not held:
            return 0
        session.add(LlmBatch(
            id=batch_id, job_id=context.job_id, status="creating", indices=held,
            requests=len(held), created_at=now,
        ))  # fmt: skip
    client = _client(provider)
    try:
        uploaded = client.files.create(
            file=(f"{batch_id}.jsonl", b"".join(lines[i] for i in held)), purpose="batch"
        )
        created = client.batches.create(
            input_file_id=uploaded.id,
            endpoint=files.ENDPOINT,
            completion_window=files.COMPLETION_WINDOW,
            metadata={"priorforge_batch": str(batch_id), "priorforge_job": str(context.job_id)},
        )
    except openai.APIError as exc:
        # Most likely nothing was queued at the provider: the items' leases end now, and the
        # reconciler sends them again. (A create that timed out may still have made a batch:
        # its results are then never read, and its cost is not recorded.)
        log.warning("job %s: sending batch %s failed: %s", context.job_id, batch_id, exc)
        _close(batch_id, "failed", error=f"{type(exc).__name__}: {exc}", expire=True)
        return 0
    finally:
        client.close()
    with session_scope() as session:
        sent = repository.confirm_batch(session, batch_id, created.id, uploaded.id, created.status)
    if not sent:  # the stale sweep gave its items back meanwhile: do not pay for it twice
        _cancel_at_provider(provider, created.id)
        return 0
    log.info("job %s: batch %s sent as %s (%d requests)", context.job_id, batch_id, created.id,
             len(held))  # fmt: skip
    return len(held)


def _provider_of(session: Any, job_id: uuid.UUID, settings: Settings) -> ProviderConfig | None:
    job = repository.get_job(session, job_id)
    if job is None:
        return None
    try:
        spec = JobSpec.model_validate(job.spec)
        return resolve_provider(settings, spec.provider, spec.model)
    except (PriorForgeError, ValidationError):
        return None  # a provider since removed from the server: nothing to call


def _cancel_at_provider(provider: ProviderConfig, provider_batch_id: str) -> None:
    client = _client(provider)
    try:
        client.batches.cancel(provider_batch_id)
    except openai.APIError as exc:
        log.warning("could not cancel batch %s at the provider: %s", provider_batch_id, exc)
    finally:
        client.close()


def _close(
    batch_id: uuid.UUID,
    status: str,
    *,
    error: str | None = None,
    release: bool = False,
    expire: bool = False,
    outcome: dict[str, Any] | None = None,
) -> list[int]:
    """End a batch row. Its items still held: with ``release``, back to pending now (the
    caller sends them); with ``expire``, their leases end now (the reconciler sends them)."""
    now = utcnow()
    with session_scope() as session:
        row = repository.update_batch(
            session, batch_id, status=status, error=error, outcome=outcome, finished_at=now
        )
        owner = f"{OWNER_PREFIX}{row.id}"
        if expire:
            repository.transfer_leases(session, row.job_id, row.indices, owner, owner, now)
        if not release:
            return []
        return repository.release_leases(session, row.job_id, row.indices, owner, now)


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
        except Exception:  # one batch must not keep the others from being read
            log.exception("job %s: polling batch %s failed", job_id, row.id)
    return finished


def cancel_ended(settings: Settings) -> int:
    """Cancel, at the provider, the open batches of jobs that ended (cancelled, failed, or
    stopped) before their results came: nothing would read them. Returns how many."""
    with session_scope() as session:
        orphans = repository.claim_orphaned_batches(session)
        specs = {row.id: (row.job_id, row.provider_batch_id) for row in orphans}
        providers = {row.id: _provider_of(session, row.job_id, settings) for row in orphans}
    for batch_id, (_job_id, provider_batch_id) in specs.items():
        provider = providers[batch_id]
        if provider is not None and provider_batch_id:
            _cancel_at_provider(provider, provider_batch_id)
        _close(batch_id, "cancelled", error="its job ended before the results came")
    return len(specs)


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
        terminal = found.status in files.TERMINAL
        _observed(row, found.status, terminal)
        if not terminal:
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
        "errors": dict(Counter(results.errors.values())),
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


def _observed(row: LlmBatch, status: str, terminal: bool) -> None:
    """Record what the provider said. A batch still running keeps its items' leases for
    another window; a finished one is claimed until it has been read (a slow read is not
    polled and read twice)."""
    now = utcnow()
    with session_scope() as session:
        claim = {"polled_at": now + HOLD} if terminal else {}
        repository.update_batch(session, row.id, provider_status=status, **claim)
        if not terminal:
            owner = f"{OWNER_PREFIX}{row.id}"
            repository.transfer_leases(session, row.job_id, row.indices, owner, owner, now + HOLD)


def _dispatch(
    job_id: uuid.UUID, indices: list[int], dispatcher: Dispatcher, settings: Settings
) -> None:
    if indices:
        with session_scope() as session:
            jobs.redispatch(session, dispatcher, job_id, indices, settings)
