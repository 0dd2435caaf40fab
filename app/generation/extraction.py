"""Run scenario-extraction items: one source document in, validated scenarios out."""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.billing import repository as billing
from app.billing.usage import EXTRACT, UsageIncrement, UsageKey
from app.core.db import session_scope
from app.core.settings import Settings
from app.generation.pipeline import ChunkReport, JobWatch, client_for, event_loop, heartbeat
from app.jobs import repository
from app.jobs.tally import result_tally
from app.llm.client import Completion, CompletionFailed
from app.llm.provider import ProviderConfig, resolve_provider
from app.models.base import utcnow
from app.prompting.render import prompt_library
from app.scenarios import repository as scenarios
from app.scenarios.bank import Scenario
from app.scenarios.extraction_spec import ExtractionSpec, read_candidates


@dataclass(frozen=True)
class ExtractionJob:
    job_id: uuid.UUID
    team_id: uuid.UUID
    spec: ExtractionSpec


def run_items(
    job: ExtractionJob,
    indices: list[int],
    *,
    worker_id: str,
    settings: Settings,
    report: ChunkReport,
) -> None:
    provider = resolve_provider(settings, job.spec.provider, job.spec.model)
    event_loop().run(
        _extract(job, provider, indices, worker_id, settings, report),
        context=contextvars.copy_context(),  # the job's, for logging
    )


async def _extract(
    job: ExtractionJob,
    provider: ProviderConfig,
    indices: list[int],
    worker_id: str,
    settings: Settings,
    report: ChunkReport,
) -> None:
    semaphore = asyncio.Semaphore(provider.concurrency)
    client = client_for(provider)
    watch = JobWatch(job.job_id)
    remaining = set(indices)
    model = job.spec.model or provider.model
    sampling = job.spec.sampling

    async def one(index: int) -> None:
        source = job.spec.sources[index]
        async with semaphore:
            if not await watch.active():
                return
            prompt = prompt_library().render_extraction(source, job.spec.per_source)
            outcome = await client.complete_sampled(
                prompt.messages, model=model, sampling=sampling, seed=index
            )
        await asyncio.to_thread(_record, job, index, outcome, provider, model, report)
        remaining.discard(index)

    tasks = [asyncio.create_task(one(index)) for index in indices]
    watchdog = asyncio.create_task(
        heartbeat(job.job_id, remaining, worker_id, settings, tasks, report)
    )
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        watchdog.cancel()
        watch.close()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result


def _record(
    job: ExtractionJob,
    index: int,
    outcome: Completion | CompletionFailed,
    provider: ProviderConfig,
    model: str,
    report: ChunkReport,
) -> None:
    source = job.spec.sources[index]
    result: dict[str, Any] = {"source": source.citation, "model": model, "scenarios": []}
    valid: list[Scenario] = []
    if isinstance(outcome, CompletionFailed):
        result |= {"status": "failed", "reason": outcome.reason, "detail": outcome.detail}
        result |= {"llm_calls": outcome.calls, "llm_errors": outcome.errors}
    else:
        valid, errors = read_candidates(
            outcome.text,
            id_prefix=f"x{job.job_id.hex[:8]}-{index:04d}",
            source=source.citation,
            split=job.spec.split,
        )
        result |= {
            "raw_text": outcome.text,
            "errors": errors,
            "scenarios": [s.id for s in valid],
            "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
            "llm_calls": outcome.calls,
            "llm_errors": outcome.errors,
            "cost_usd": provider.cost_usd(outcome.prompt_tokens, outcome.completion_tokens),
            "prices_version": provider.prices_version,
        }
        if valid:
            result["status"] = "accepted"
        else:
            result |= {"status": "rejected", "reason": "no_valid_scenarios"}
    with session_scope() as session:
        if not _close_item(session, job.job_id, index, result):
            return  # another delivery recorded this source already
        if valid:
            scenarios.add_scenarios(session, job.team_id, valid, job.job_id)
        repository.add_to_tally(session, job.job_id, [result_tally(result)])
        used = UsageIncrement(
            UsageKey(
                utcnow().date(),
                job.job_id,
                EXTRACT,
                provider.name,
                model,
                str(result.get("prices_version", "")),
            ),
            calls=int(result.get("llm_calls", 0)),
            errors=int(result.get("llm_errors", 0)),
            prompt_tokens=int(result.get("prompt_tokens", 0)),
            completion_tokens=int(result.get("completion_tokens", 0)),
            cost_usd=float(result.get("cost_usd", 0.0)),
        )
        if not used.empty:
            billing.add_usage(session, job.team_id, [used])
    report.written += 1
    report.outcomes[result["status"]] = report.outcomes.get(result["status"], 0) + 1


def _close_item(session: Session, job_id: uuid.UUID, index: int, result: dict[str, Any]) -> bool:
    state = "failed" if result["status"] == "failed" else "done"
    return repository.record_item_result(session, job_id, index, state, result, utcnow())
