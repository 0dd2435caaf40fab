"""HTTP for jobs and their documents."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status
from sqlalchemy.orm import Session

from app.core.auth import Reader, SessionDep, Submitter
from app.core.errors import InvalidRequest
from app.core.settings import get_settings
from app.jobs import service
from app.jobs.dispatch_default import get_dispatcher
from app.jobs.schemas import (
    DocumentPage,
    DocumentRead,
    JobPage,
    JobRead,
    WorkItemPage,
    WorkItemRead,
)
from app.jobs.spec import JobSpec
from app.models import Job

router = APIRouter(prefix="/v1", tags=["jobs"])

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
DOCUMENT_STATUSES = ("accepted", "rejected", "duplicate", "failed")


@router.post("/jobs", status_code=status.HTTP_202_ACCEPTED, response_model=JobRead)
def create_job(
    spec: JobSpec,
    principal: Submitter,
    session: SessionDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobRead:
    """Submit a generation job; repeat safely with the same Idempotency-Key."""
    job, created = service.submit_job(
        session,
        principal,
        spec,
        idempotency_key=idempotency_key,
        dispatcher=get_dispatcher(),
        settings=get_settings(),
    )
    return accepted(session, job, created, response)


def accepted(session: Session, job: Job, created: bool, response: Response) -> JobRead:
    """The 202 answer to a job submission, marking idempotent replays."""
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return JobRead.of(service.view(session, job))


@router.get("/jobs", response_model=JobPage)
def list_jobs(
    principal: Reader,
    session: SessionDep,
    status_: Annotated[str | None, Query(alias="status")] = None,
    dataset: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobPage:
    """List the team's jobs, newest first."""
    if status_ is not None and status_ not in JOB_STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(JOB_STATUSES)}")
    views, next_cursor = service.list_jobs(
        session, principal, status=status_, dataset=dataset, cursor=cursor, limit=limit
    )
    return JobPage(items=[JobRead.of(v) for v in views], next_cursor=next_cursor)


@router.get("/jobs/{job_id}", response_model=JobRead)
def get_job(job_id: uuid.UUID, principal: Reader, session: SessionDep) -> JobRead:
    """A job with its progress counts, rejection reasons and token usage."""
    return JobRead.of(service.view(session, service.get_job(session, principal, job_id)))


@router.post("/jobs/{job_id}/cancel", response_model=JobRead)
def cancel_job(job_id: uuid.UUID, principal: Submitter, session: SessionDep) -> JobRead:
    """Cancel a queued or running job; workers stop taking its items promptly."""
    return JobRead.of(service.view(session, service.cancel_job(session, principal, job_id)))


@router.get("/jobs/{job_id}/documents", response_model=DocumentPage)
def list_documents(
    job_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    status_: Annotated[str | None, Query(alias="status")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DocumentPage:
    """The job's documents in item order, with outcome, reason and usage."""
    if status_ is not None and status_ not in DOCUMENT_STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(DOCUMENT_STATUSES)}")
    items, next_cursor = service.list_documents(
        session, principal, job_id, status=status_, cursor=cursor, limit=limit
    )
    return DocumentPage(items=[DocumentRead.of(d) for d in items], next_cursor=next_cursor)


@router.get("/jobs/{job_id}/items", response_model=WorkItemPage)
def list_items(
    job_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> WorkItemPage:
    """The job's work items: plan, state, attempts, and the result of extraction items."""
    items, next_cursor = service.list_items(session, principal, job_id, cursor=cursor, limit=limit)
    return WorkItemPage(items=[WorkItemRead.of(i) for i in items], next_cursor=next_cursor)


@router.get("/documents/{document_id}", response_model=DocumentRead)
def get_document(document_id: uuid.UUID, principal: Reader, session: SessionDep) -> DocumentRead:
    """One document, including the raw model output for rejected ones."""
    return DocumentRead.of(service.get_document(session, principal, document_id))
