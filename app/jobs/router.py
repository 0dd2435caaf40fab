"""HTTP for jobs and their documents."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal, get_args

from fastapi import APIRouter, Header, Query, Response, status
from sqlalchemy.orm import Session

from app.core.auth import Reader, SessionDep, Submitter
from app.core.problems import documented
from app.core.routing import GuardedRoute
from app.core.settings import get_settings
from app.jobs import service
from app.jobs.dispatch_default import get_dispatcher
from app.jobs.schemas import (
    DocumentPage,
    DocumentRead,
    JobEstimate,
    JobPage,
    JobRead,
    WorkItemPage,
    WorkItemRead,
)
from app.jobs.spec import JobSpec
from app.models import Job

router = APIRouter(prefix="/v1", tags=["jobs"], route_class=GuardedRoute)

JobStatus = Literal["queued", "running", "succeeded", "stopped_budget", "failed", "cancelled"]
DocumentStatus = Literal["accepted", "rejected", "duplicate", "failed"]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=255,
        pattern=r"^[!-~]+$",
        description="Repeat a POST safely: the same key and body return the same job. "
        "1-255 visible ASCII characters.",
    ),
]
# Item-index cursors: the last index of the previous page (indices fit a 32-bit integer).
IndexCursor = Annotated[
    int | None, Query(ge=0, le=2**31 - 1, description="next_cursor of the previous page.")
]


@router.post(
    "/jobs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=None,
    responses={
        202: {"model": JobRead, "description": "The job, queued"},
        200: {"model": JobEstimate, "description": "dry_run: what the job would cost"},
        **documented(409, 429, 503),
    },
)
def create_job(
    spec: JobSpec,
    principal: Submitter,
    session: SessionDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    dry_run: Annotated[
        bool, Query(description="Only estimate calls, tokens and cost; store and send nothing.")
    ] = False,
) -> JobRead | JobEstimate:
    """Submit a generation job; repeat safely with the same Idempotency-Key."""
    if dry_run:
        response.status_code = status.HTTP_200_OK
        estimate = service.estimate_job(session, principal, spec, get_settings())
        return JobEstimate.model_validate(estimate, from_attributes=True)
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
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    dataset: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[
        str | None,
        Query(pattern=service.JOB_CURSOR_PATTERN, description="next_cursor of the previous page."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobPage:
    """List the team's jobs, newest first."""
    views, next_cursor = service.list_jobs(
        session, principal, status=status_, dataset=dataset, cursor=cursor, limit=limit
    )
    return JobPage(items=[JobRead.of(v) for v in views], next_cursor=next_cursor)


@router.get("/jobs/{job_id}", response_model=JobRead)
def get_job(job_id: uuid.UUID, principal: Reader, session: SessionDep) -> JobRead:
    """A job with its progress counts, rejection reasons and token usage."""
    return JobRead.of(service.read_job(session, principal, job_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobRead)
def cancel_job(job_id: uuid.UUID, principal: Submitter, session: SessionDep) -> JobRead:
    """Cancel a queued or running job; workers stop taking its items promptly."""
    return JobRead.of(service.view(session, service.cancel_job(session, principal, job_id)))


@router.post("/jobs/{job_id}/retry-failed", response_model=JobRead, responses=documented(409))
def retry_failed_items(job_id: uuid.UUID, principal: Submitter, session: SessionDep) -> JobRead:
    """Run a job's failed items again (a failed job runs again); their cost stays counted."""
    service.retry_failed_items(
        session, principal, job_id, dispatcher=get_dispatcher(), settings=get_settings()
    )
    session.flush()
    return JobRead.of(service.read_job(session, principal, job_id))


@router.get("/jobs/{job_id}/documents", response_model=DocumentPage)
def list_documents(
    job_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    status_: Annotated[DocumentStatus | None, Query(alias="status")] = None,
    reason: Annotated[
        str | None,
        Query(
            pattern=service.REASON_PATTERN,
            max_length=64,
            description="Only documents with this reason (too_short, near, contaminated, ...).",
        ),
    ] = None,
    cursor: IndexCursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DocumentPage:
    """The job's documents in item order, with outcome, reason and usage."""
    items, next_cursor = service.list_documents(
        session, principal, job_id, status=status_, cursor=cursor, limit=limit, reason=reason
    )
    return DocumentPage(items=[DocumentRead.of(d) for d in items], next_cursor=next_cursor)


@router.get("/jobs/{job_id}/items", response_model=WorkItemPage)
def list_items(
    job_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    cursor: IndexCursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> WorkItemPage:
    """The job's work items: plan, state, attempts, and the result of extraction items."""
    items, next_cursor = service.list_items(session, principal, job_id, cursor=cursor, limit=limit)
    return WorkItemPage(items=[WorkItemRead.of(i) for i in items], next_cursor=next_cursor)


@router.get("/documents/{document_id}", response_model=DocumentRead)
def get_document(document_id: uuid.UUID, principal: Reader, session: SessionDep) -> DocumentRead:
    """One document, including the raw model output for rejected ones."""
    return DocumentRead.of(service.get_document(session, principal, document_id))
