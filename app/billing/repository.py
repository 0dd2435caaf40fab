"""Usage rows and the sums budgets read. No commits: callers own the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.billing.usage import UsageIncrement, combine
from app.core.sql import dialect_insert
from app.jobs.repository import ACTIVE
from app.jobs.tally import OUTCOME_PREFIX
from app.models import Job, JobTally, Team, UsageDaily

_COUNTERS = ("calls", "errors", "prompt_tokens", "completion_tokens", "cost_usd")


def add_usage(session: Session, team_id: uuid.UUID, increments: Sequence[UsageIncrement]) -> None:
    """Add to the team's usage rows (UPSERT per key, in key order), in the caller's
    transaction: the usage commits with the outcomes that caused it."""
    rows = [
        {"team_id": team_id, **i.key._asdict()} | {name: getattr(i, name) for name in _COUNTERS}
        for i in combine(increments)
    ]
    if not rows:
        return
    table = UsageDaily.__table__
    statement = dialect_insert(session, table)
    keys = ("team_id", "day", "job_id", "purpose", "provider", "model", "prices_version")
    statement = statement.on_conflict_do_update(
        index_elements=[table.c[name] for name in keys],
        set_={name: table.c[name] + statement.excluded[name] for name in _COUNTERS},
    )
    session.execute(statement, rows)


def job_spent(session: Session, job_id: uuid.UUID) -> float:
    """What the job's recorded outcomes cost: generation and judge."""
    return float(
        session.scalar(
            select(func.coalesce(func.sum(JobTally.cost_usd), 0.0)).where(JobTally.job_id == job_id)
        )
        or 0.0
    )


def team_spent(session: Session, team_id: uuid.UUID, since: date) -> float:
    return float(
        session.scalar(
            select(func.coalesce(func.sum(UsageDaily.cost_usd), 0.0)).where(
                UsageDaily.team_id == team_id, UsageDaily.day >= since
            )
        )
        or 0.0
    )


def team_reserved(session: Session, team_id: uuid.UUID) -> float:
    """The worst case of every item in flight in the team's queued and running jobs."""
    finished = (
        select(JobTally.job_id, func.sum(JobTally.items).label("finished"))
        .where(JobTally.bucket.startswith(OUTCOME_PREFIX))
        .join(Job, Job.id == JobTally.job_id)
        .where(Job.team_id == team_id, Job.status.in_(ACTIVE))
        .group_by(JobTally.job_id)
        .subquery()
    )
    in_flight = Job.planned_items - func.coalesce(finished.c.finished, 0)
    reserved = case((in_flight > 0, in_flight), else_=0) * Job.reserve_usd_per_item
    return float(
        session.scalar(
            select(func.coalesce(func.sum(reserved), 0.0))
            .select_from(Job)
            .outerjoin(finished, finished.c.job_id == Job.id)
            .where(Job.team_id == team_id, Job.status.in_(ACTIVE))
        )
        or 0.0
    )


def monthly_budget(session: Session, team_id: uuid.UUID) -> float | None:
    return session.scalar(select(Team.monthly_budget_usd).where(Team.id == team_id))


def set_monthly_budget(session: Session, team_id: uuid.UUID, usd: float | None) -> None:
    team = session.get(Team, team_id)
    assert team is not None
    team.monthly_budget_usd = usd


GROUPS = {
    "day": (UsageDaily.day,),
    "job": (UsageDaily.job_id,),
    "model": (UsageDaily.purpose, UsageDaily.provider, UsageDaily.model, UsageDaily.prices_version),
}


def usage(
    session: Session,
    team_id: uuid.UUID,
    *,
    since: date,
    until: date,
    group_by: Sequence[str],
    job_id: uuid.UUID | None = None,
    limit: int = 1000,
) -> Sequence[Any]:
    """The team's usage from ``since`` to ``until`` (inclusive), summed per group."""
    columns = [column for name in group_by for column in GROUPS[name]]
    statement = (
        select(*columns, *(func.sum(UsageDaily.__table__.c[name]) for name in _COUNTERS))
        .where(UsageDaily.team_id == team_id, UsageDaily.day >= since, UsageDaily.day <= until)
        .group_by(*columns)
        .order_by(*columns)
        .limit(limit)
    )
    if job_id is not None:
        statement = statement.where(UsageDaily.job_id == job_id)
    return session.execute(statement).all()
