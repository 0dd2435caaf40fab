"""HTTP for a team's budget and its usage: GET|PUT /v1/budget, GET /v1/usage."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from app.billing import repository, service
from app.billing.schemas import BudgetRead, BudgetUpdate, UsagePage, UsageRow
from app.core.auth import Admin, Reader, SessionDep
from app.core.errors import InvalidRequest
from app.core.routing import GuardedRoute

router = APIRouter(prefix="/v1", tags=["billing"], route_class=GuardedRoute)


def _iso_day(value: object) -> object:
    """A day as the schema's format says, YYYY-MM-DD: not a timestamp that pydantic would
    also read as a date."""
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("a day is written YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_iso_day)]
Group = Literal["day", "job", "model"]
MAX_ROWS = 1000
_COUNTERS = ("calls", "errors", "prompt_tokens", "completion_tokens", "cost_usd")


@router.get("/budget", response_model=BudgetRead)
def get_budget(principal: Reader, session: SessionDep) -> BudgetRead:
    """The team's monthly budget, this month's spend and what running jobs hold in flight."""
    return BudgetRead.of(service.team_budget(session, principal.team_id))


@router.put("/budget", response_model=BudgetRead)
def put_budget(body: BudgetUpdate, principal: Admin, session: SessionDep) -> BudgetRead:
    """Set (or with null, remove) the team's monthly budget; running jobs plan against it
    from their next item on."""
    cap = None if body.monthly_budget_usd is None else float(body.monthly_budget_usd)
    return BudgetRead.of(service.set_team_budget(session, principal.team_id, cap))


@router.get("/usage", response_model=UsagePage)
def get_usage(
    principal: Reader,
    session: SessionDep,
    since: Annotated[
        Day | None, Query(description="First day (UTC); default: the first of until's month.")
    ] = None,
    until: Annotated[
        Day | None, Query(description="Last day (UTC); default: today (or since, if later).")
    ] = None,
    group_by: Annotated[
        list[Group] | None,
        Query(description="Any of day, job, model (purpose, provider, model, price version)."),
    ] = None,
    job_id: Annotated[uuid.UUID | None, Query(description="Only this job's usage.")] = None,
) -> UsagePage:
    """The team's LLM usage and cost, summed per day, job and/or model."""
    if until is None:
        until = max(service.today(), since) if since else service.today()
    since = since or service.month_start(until)
    if until < since:
        raise InvalidRequest(f"until ({until}) is before since ({since})")
    groups = list(dict.fromkeys(group_by or ["day"]))
    fields = [column.key for group in groups for column in repository.GROUPS[group]]

    def summed(grouping: list[str]) -> Sequence[Any]:
        return repository.usage(
            session,
            principal.team_id,
            since=since,
            until=until,
            group_by=grouping,
            job_id=job_id,
            limit=MAX_ROWS + 1,
        )

    rows = summed(groups)
    [everything] = summed([])
    items = [
        UsageRow(
            **dict(zip(fields, row[: len(fields)], strict=True)),
            **dict(zip(_COUNTERS, _numbers(row[len(fields) :]), strict=True)),
        )
        for row in rows
    ]
    total = UsageRow(**dict(zip(_COUNTERS, _numbers(everything), strict=True)))
    return UsagePage(
        since=since,
        until=until,
        group_by=groups,
        items=items[:MAX_ROWS],
        truncated=len(items) > MAX_ROWS,
        total=total,
    )


def _numbers(values: Sequence[Any]) -> list[float | int]:
    *counts, cost = values
    return [int(v or 0) for v in counts] + [float(cost or 0.0)]
