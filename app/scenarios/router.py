"""HTTP for the scenario bank."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from app.core.auth import Reader, SessionDep, Submitter
from app.core.body import MiB, body_limit, inline_schema, jsonl_body, raw_body, utf8
from app.core.problems import documented
from app.core.routing import GuardedRoute
from app.core.settings import get_settings
from app.jobs.dispatch_default import get_dispatcher
from app.jobs.router import IdempotencyKey, accepted
from app.jobs.schemas import JobRead
from app.scenarios import extraction, service
from app.scenarios.bank import Scenario, Split, Topic
from app.scenarios.extraction_spec import ExtractionSpec
from app.scenarios.schemas import ScenarioImportResult, ScenarioPage, ScenarioRead

router = APIRouter(prefix="/v1/scenarios", tags=["scenarios"], route_class=GuardedRoute)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ScenarioImportResult,
    openapi_extra=jsonl_body(inline_schema(Scenario.model_json_schema())),
    responses=documented(409),
)
def import_scenarios(
    body: Annotated[bytes, Depends(raw_body)], principal: Submitter, session: SessionDep
) -> ScenarioImportResult:
    """Import scenarios from a JSONL body: all lines valid, or nothing imported."""
    imported = service.import_jsonl(session, principal, utf8(body))
    return ScenarioImportResult(imported=len(imported), ids=[s.id for s in imported])


@router.post(
    "/extract",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobRead,
    # 500 sources of up to 60,000 characters each.
    openapi_extra=body_limit(32 * MiB),
    responses=documented(409, 503),
)
def extract_scenarios(
    spec: ExtractionSpec,
    principal: Submitter,
    session: SessionDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> JobRead:
    """Start a job that writes new team scenarios from the given source documents."""
    job, created = extraction.submit_extraction(
        session,
        principal,
        spec,
        idempotency_key=idempotency_key,
        dispatcher=get_dispatcher(),
        settings=get_settings(),
    )
    return accepted(session, job, created, response)


@router.get("", response_model=ScenarioPage)
def list_scenarios(
    principal: Reader,
    session: SessionDep,
    split: Split | None = None,
    topic: Topic | None = None,
    origin: Annotated[str | None, Query(pattern="^(builtin|team)$")] = None,
    cursor: Annotated[
        str | None, Query(max_length=64, description="next_cursor of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ScenarioPage:
    """The scenarios this team can use: built-in and its own, by id."""
    entries, next_cursor = service.list_scenarios(
        session,
        principal,
        split=split.value if split else None,
        topic=topic.value if topic else None,
        origin=origin,
        after=cursor,
        limit=limit,
    )
    return ScenarioPage(
        items=[ScenarioRead(**e.scenario.model_dump(), origin=e.origin) for e in entries],
        next_cursor=next_cursor,
    )
