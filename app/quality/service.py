"""Quality reports over a job's accepted documents."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.core.errors import NotFound
from app.generation.context import JobContext
from app.jobs import repository as jobs_repository
from app.quality import repository
from app.quality.canary import canary_line
from app.quality.diversity import DiversityReport, diversity


def diversity_report(session: Session, job_id: uuid.UUID, canary_guid: str) -> DiversityReport:
    job = jobs_repository.get_job(session, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    context = JobContext.for_job(job, session)
    rows = repository.accepted_texts(session, job_id)
    marker = canary_line(canary_guid)
    return diversity(
        [row.text.replace(marker, "").strip() for row in rows],
        [row.scenario_id for row in rows],
        [row.surface_form for row in rows],
        [row.stance for row in rows],
        scenarios_selected=len(context.scenarios),
        forms_selected=len(context.forms),
    )
