"""Every query of /metrics: the deployment's jobs, outcome counters and LLM usage."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.jobs.repository import ACTIVE
from app.jobs.tally import OUTCOME_PREFIX, SEPARATOR
from app.models import Job, JobTally, Team, UsageDaily, WorkItem


@dataclass(frozen=True)
class Snapshot:
    jobs: dict[str, int]
    documents: dict[tuple[str, str], int]
    items_in_flight: int
    usage: list[tuple[str, str, str, str, int, int, int, int, float]]
    queues: dict[str, int | None]  # None: the broker could not be asked


def read(session: Session, queues: dict[str, int | None]) -> Snapshot:
    jobs = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    documents: dict[tuple[str, str], int] = {}
    outcome_rows = session.execute(
        select(JobTally.bucket, func.sum(JobTally.items))
        .where(JobTally.bucket.startswith(OUTCOME_PREFIX))
        .group_by(JobTally.bucket)
    )
    for bucket, items in outcome_rows:
        _outcome, status, reason = bucket.split(SEPARATOR, 2)
        documents[(status, reason)] = int(items or 0)
    in_flight = session.scalar(
        select(func.count())
        .select_from(WorkItem)
        .join(Job, Job.id == WorkItem.job_id)
        .where(Job.status.in_(ACTIVE), WorkItem.state == "leased")
    )
    usage = session.execute(
        select(
            Team.name,
            UsageDaily.provider,
            UsageDaily.model,
            UsageDaily.purpose,
            func.sum(UsageDaily.calls),
            func.sum(UsageDaily.errors),
            func.sum(UsageDaily.prompt_tokens),
            func.sum(UsageDaily.completion_tokens),
            func.sum(UsageDaily.cost_usd),
        )
        .join(Team, Team.id == UsageDaily.team_id)
        .group_by(Team.name, UsageDaily.provider, UsageDaily.model, UsageDaily.purpose)
    ).all()
    return Snapshot(
        jobs={status: int(count) for status, count in jobs.items()},
        documents=documents,
        items_in_flight=int(in_flight or 0),
        usage=[
            (team, provider, model, purpose, int(c), int(e), int(p), int(o), float(cost))
            for team, provider, model, purpose, c, e, p, o, cost in usage
        ],
        queues=queues,
    )
