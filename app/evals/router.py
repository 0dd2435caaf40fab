"""HTTP for propensity evaluations."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from app.core.auth import Reader, SessionDep, Submitter
from app.core.body import body_limit
from app.core.problems import documented
from app.core.routing import GuardedRoute
from app.core.settings import get_settings
from app.evals import service
from app.evals.schemas import EvalPage, EvalRead
from app.evals.spec import EVAL_BODY_BYTES, EvalSpec
from app.models import EvalRun
from app.storage.default import get_store

router = APIRouter(prefix="/v1/evals", tags=["evals"], route_class=GuardedRoute)


def _read(row: EvalRun) -> EvalRead:
    return EvalRead(
        id=row.id,
        name=row.name,
        model=row.model,
        status=row.status,
        methods=list(row.request["methods"]),
        items=len(row.request["items"]),
        requests_total=row.requests_total,
        requests_done=row.requests_done,
        overlap=row.request["overlap"],
        results=row.results,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EvalRead,
    responses=documented(409),
    openapi_extra=body_limit(EVAL_BODY_BYTES),
)
def request_eval(
    body: EvalSpec, principal: Submitter, session: SessionDep, response: Response
) -> EvalRead:
    """Evaluate a configured model's misaligned-choice rate (a worker runs it; poll it)."""
    row = service.request_eval(
        session,
        principal,
        body,
        store=get_store(),
        settings=get_settings(),
        dispatch=service.celery_dispatch,
    )
    response.headers["Location"] = f"/v1/evals/{row.id}"
    return _read(row)


@router.get("", response_model=EvalPage)
def list_evals(
    principal: Reader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> EvalPage:
    """The team's evaluations, newest first."""
    return EvalPage(items=[_read(r) for r in service.list_evals(session, principal, limit)])


@router.get("/{eval_id}", response_model=EvalRead)
def get_eval(
    eval_id: Annotated[uuid.UUID, Path()], principal: Reader, session: SessionDep
) -> EvalRead:
    """One evaluation: its progress, and its results once it has finished."""
    return _read(service.get_eval(session, principal, eval_id))
