"""Run one chunk of work items: lease, render, call the LLM concurrently, gate, dedup, store.

Sync at the edges (SQLAlchemy sessions), asyncio in the middle (the async OpenAI client under
a semaphore). Each finished item is written in its own short transaction as soon as its
completion arrives, so a worker killed mid-chunk loses only the calls in flight.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from app.core.db import session_scope
from app.core.settings import Settings
from app.dedup.exact import fingerprint
from app.generation.cleaning import clean
from app.generation.context import JobContext
from app.jobs import repository
from app.jobs import service as jobs
from app.jobs.dispatch import Dispatcher
from app.jobs.planner import PlannedItem
from app.llm.client import ChatClient, Completion, CompletionFailed
from app.llm.provider import ProviderConfig
from app.models.base import utcnow
from app.prompting.render import RenderedPrompt
from app.quality.gates import Candidate, first_rejection
from app.storage import ObjectStore

log = logging.getLogger(__name__)

DOCUMENT_NAMESPACE = uuid.UUID("6f1c8a52-3c1e-4f7e-9a53-8b1f0d7c2e11")


def document_id(job_id: uuid.UUID, index: int) -> uuid.UUID:
    return uuid.uuid5(DOCUMENT_NAMESPACE, f"{job_id}:{index}")


@dataclass
class ChunkReport:
    job_id: uuid.UUID
    leased: int = 0
    written: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None
    job_status: str = ""


def run_chunk(
    job_id: uuid.UUID,
    start: int,
    end: int,
    *,
    worker_id: str,
    dispatcher: Dispatcher,
    settings: Settings,
    store: ObjectStore,
) -> ChunkReport:
    report = ChunkReport(job_id=job_id)
    now = utcnow()
    with session_scope() as session:
        job = repository.get_job(session, job_id)
        if job is None or job.status not in repository.ACTIVE:
            report.stopped = "job not active"
            report.job_status = job.status if job else "missing"
            return report
        if job.status == "queued":
            repository.transition(
                session, job_id, ("queued",), status="running", started_at=now, updated_at=now
            )
        leased = repository.lease_items(
            session,
            job_id,
            start,
            end,
            worker_id,
            now,
            now + timedelta(seconds=settings.lease_seconds),
        )
        context = JobContext.for_job(job)
    report.leased = len(leased)

    runnable: list[PlannedItem] = []
    for lease in leased:
        item = PlannedItem.from_json(lease.plan)
        if lease.attempts > settings.max_item_attempts:
            _record(context, item, None, report, exhausted=lease.attempts - 1)
        else:
            runnable.append(item)

    if runnable:
        provider = context.provider(settings)
        asyncio.run(_generate(context, provider, runnable, worker_id, settings, report))

    with session_scope() as session:
        report.job_status = jobs.advance_job(
            session, job_id, dispatcher=dispatcher, settings=settings, store=store
        )
    return report


async def _generate(
    context: JobContext,
    provider: ProviderConfig,
    items: list[PlannedItem],
    worker_id: str,
    settings: Settings,
    report: ChunkReport,
) -> None:
    semaphore = asyncio.Semaphore(provider.concurrency)
    remaining = {item.index for item in items}
    model = context.spec.model or provider.model
    sampling = context.spec.sampling

    async with ChatClient(provider) as client:

        async def one(item: PlannedItem) -> None:
            async with semaphore:
                rendered = context.render(item)
                try:
                    completion: Completion | CompletionFailed = await client.complete(
                        rendered.messages,
                        model=model,
                        temperature=sampling.temperature,
                        top_p=sampling.top_p,
                        max_tokens=sampling.max_tokens,
                        seed=item.sampling_seed,
                    )
                except CompletionFailed as failure:
                    completion = failure
                await asyncio.to_thread(
                    _record,
                    context,
                    item,
                    (rendered, completion, provider, model),
                    report,
                )
                remaining.discard(item.index)

        tasks = [asyncio.create_task(one(item)) for item in items]
        watchdog = asyncio.create_task(
            _heartbeat(context.job_id, remaining, worker_id, settings, tasks, report)
        )
        try:
            results = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            watchdog.cancel()
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result


async def _heartbeat(
    job_id: uuid.UUID,
    remaining: set[int],
    worker_id: str,
    settings: Settings,
    tasks: list[asyncio.Task[None]],
    report: ChunkReport,
) -> None:
    """Keep our leases alive while calls run, and stop promptly if the job is cancelled."""
    interval = max(0.2, settings.lease_seconds / 3)
    while True:
        await asyncio.sleep(interval)
        status = await asyncio.to_thread(_extend, job_id, sorted(remaining), worker_id, settings)
        if status not in repository.ACTIVE:
            report.stopped = f"job {status}"
            for task in tasks:
                task.cancel()
            return


def _extend(job_id: uuid.UUID, indices: list[int], worker_id: str, settings: Settings) -> str:
    with session_scope() as session:
        job = repository.get_job(session, job_id)
        if job is None:
            return "missing"
        expires = utcnow() + timedelta(seconds=settings.lease_seconds)
        repository.extend_leases(session, job_id, indices, worker_id, expires)
        return job.status


Generated = tuple[RenderedPrompt, Completion | CompletionFailed, ProviderConfig, str]


def _record(
    context: JobContext,
    item: PlannedItem,
    generated: Generated | None,
    report: ChunkReport,
    *,
    exhausted: int = 0,
) -> None:
    """Write the item's single document row and close the item, in one transaction."""
    doc_id = document_id(context.job_id, item.index)
    values: dict[str, Any] = {
        "id": doc_id,
        "job_id": context.job_id,
        "item_index": item.index,
        "team_id": context.team_id,
        "dataset_id": context.dataset_id,
        "stance": item.stance.value,
        "scenario_id": item.scenario_id,
        "surface_form": item.surface_form,
        "meta": {"voice": item.voice, "length_words": item.length_words},
        "created_at": utcnow(),
    }
    with session_scope() as session:
        if repository.document_exists(session, context.job_id, item.index):
            return  # an earlier delivery of this chunk already wrote it
        if generated is None:
            values |= {
                "status": "failed",
                "reason": "attempts_exhausted",
                "detail": f"the item's worker was lost {exhausted} times",
                "model": "",
                "prompt_sha256": "",
                "template_version": "",
            }
        else:
            values |= _evaluate(context, generated, session_claim(session, context, doc_id))
        if not repository.insert_document(session, values):
            session.rollback()
            return
        state = "failed" if values["status"] == "failed" else "done"
        repository.finish_item(session, context.job_id, item.index, state, utcnow())
    report.written += 1
    report.outcomes[values["status"]] = report.outcomes.get(values["status"], 0) + 1


def session_claim(
    session: Any, context: JobContext, doc_id: uuid.UUID
) -> Callable[[str], uuid.UUID | None]:
    def claim(content_sha256: str) -> uuid.UUID | None:
        return repository.claim_fingerprint(session, context.dataset_id, content_sha256, doc_id)

    return claim


def _evaluate(
    context: JobContext,
    generated: Generated,
    claim: Callable[[str], uuid.UUID | None],
) -> dict[str, Any]:
    rendered, outcome, provider, model = generated
    values: dict[str, Any] = {
        "model": model,
        "prompt_sha256": rendered.sha256,
        "template_version": rendered.template_version,
    }
    if isinstance(outcome, CompletionFailed):
        return values | {
            "status": "failed",
            "reason": outcome.reason,
            "detail": outcome.detail,
            "llm_calls": outcome.calls,
            "llm_errors": outcome.errors,
        }
    text = clean(outcome.text)
    values |= {
        "model": outcome.model or model,
        "raw_text": outcome.text,
        "text": text,
        "finish_reason": outcome.finish_reason,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "llm_calls": outcome.calls,
        "llm_errors": outcome.errors,
        "latency_ms": outcome.latency_ms,
        "cost_usd": provider.cost_usd(outcome.prompt_tokens, outcome.completion_tokens),
    }
    length = context.spec.length_words
    rejection = first_rejection(Candidate(text, outcome.finish_reason, length.min, length.max))
    if rejection is not None:
        return values | {
            "status": "rejected",
            "reason": rejection.reason,
            "detail": rejection.detail,
        }
    values["content_sha256"] = digest = fingerprint(text)
    original = claim(digest)
    if original is not None:
        return values | {"status": "duplicate", "reason": "exact", "duplicate_of": original}
    return values | {"status": "accepted"}
