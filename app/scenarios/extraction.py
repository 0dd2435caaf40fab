"""Scenario-extraction jobs: submission. (Workers run them in app/generation/extraction.py.)"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.core.settings import Settings
from app.jobs import service as jobs
from app.jobs.dispatch import Dispatcher
from app.llm.provider import resolve_provider
from app.models import Job
from app.scenarios.extraction_spec import ExtractionSpec
from app.teams.service import Principal


def submit_extraction(
    session: Session,
    principal: Principal,
    spec: ExtractionSpec,
    *,
    idempotency_key: str | None,
    dispatcher: Dispatcher,
    settings: Settings,
) -> tuple[Job, bool]:
    """A job that turns the given source documents into team scenarios, one item per source."""
    replayed = jobs.replay(session, principal, idempotency_key, spec.request_sha256())
    if replayed is not None:
        return replayed, False
    resolve_provider(settings, spec.provider, spec.model)
    job = jobs.new_job(
        principal,
        jobs.EXTRACT_SCENARIOS,
        spec.model_dump(mode="json"),
        spec.request_sha256(),
        idempotency_key,
        requested=len(spec.sources),
        max_items=len(spec.sources),
        dataset_id=None,
        name=spec.name,
    )
    stored, created = jobs.insert_job(session, principal, job)
    if created:
        plans: list[dict[str, object]] = [{"index": i} for i in range(len(spec.sources))]
        jobs.add_items(session, stored, plans, dispatcher, settings)
    return stored, created
