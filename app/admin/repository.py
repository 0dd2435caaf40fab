"""Every query of the dashboard's own: its audit log and the overview's counts."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from app.core.sql import insert_ignoring_conflicts
from app.jobs.tally import ACCEPTED_BUCKET, OUTCOME_PREFIX, SEPARATOR
from app.models import ActivityMinute, AdminAudit, Deployment, Job, JobMinute, JobTally
from app.models.base import utcnow


def add_audit(
    session: Session,
    *,
    team_id: uuid.UUID,
    key_id: uuid.UUID,
    key_prefix: str,
    action: str,
    target: str,
    detail: dict[str, Any],
) -> None:
    session.execute(
        insert(AdminAudit).values(
            id=uuid.uuid4(),
            at=utcnow(),
            team_id=team_id,
            key_id=key_id,
            key_prefix=key_prefix,
            action=action,
            target=target[:200],
            detail=detail,
        )
    )


def audit_page(
    session: Session, team_id: uuid.UUID, before: datetime | None, limit: int
) -> Sequence[AdminAudit]:
    """The team's audit rows, newest first, older than ``before`` if given."""
    query = select(AdminAudit).where(AdminAudit.team_id == team_id)
    if before is not None:
        query = query.where(AdminAudit.at < before)
    return session.scalars(query.order_by(AdminAudit.at.desc()).limit(limit)).all()


def jobs_by_status(session: Session, team_id: uuid.UUID) -> dict[str, int]:
    rows = session.execute(
        select(Job.status, func.count()).where(Job.team_id == team_id).group_by(Job.status)
    )
    return {status: count for status, count in rows}


def rejection_reasons(session: Session, team_id: uuid.UUID) -> dict[str, int]:
    """Rejected documents of the team's jobs by gate, from the counters, most first."""
    prefix = f"{OUTCOME_PREFIX}rejected{SEPARATOR}"
    rows = session.execute(
        select(JobTally.bucket, func.sum(JobTally.items))
        .join(Job, Job.id == JobTally.job_id)
        .where(Job.team_id == team_id, JobTally.bucket.startswith(prefix))
        .group_by(JobTally.bucket)
    )
    reasons = {bucket.removeprefix(prefix) or "unknown": int(n or 0) for bucket, n in rows}
    return dict(sorted(((r, n) for r, n in reasons.items() if n), key=lambda kv: -kv[1]))


def running_spend(session: Session, team_id: uuid.UUID) -> list[tuple[float, int, int]]:
    """(spent, accepted, requested) of each of the team's running jobs, from the counters."""
    accepted = func.coalesce(func.sum(JobTally.items).filter(JobTally.bucket == ACCEPTED_BUCKET), 0)
    rows = session.execute(
        select(func.coalesce(func.sum(JobTally.cost_usd), 0.0), accepted, Job.requested)
        .select_from(Job)
        .outerjoin(JobTally, JobTally.job_id == Job.id)
        .where(Job.team_id == team_id, Job.status == "running")
        .group_by(Job.id, Job.requested)
    )
    return [(float(spent), int(done), int(requested)) for spent, done, requested in rows]


def activity_since(
    session: Session, team_id: uuid.UUID, since: datetime
) -> dict[datetime, tuple[int, int, float]]:
    """{minute: (accepted, not accepted, cost)} of the team's minutes from ``since`` on."""
    rows = session.execute(
        select(
            ActivityMinute.minute,
            ActivityMinute.accepted,
            ActivityMinute.rejected + ActivityMinute.duplicates + ActivityMinute.failed,
            ActivityMinute.cost_usd,
        ).where(ActivityMinute.team_id == team_id, ActivityMinute.minute >= since)
    )
    return {minute: (int(a), int(other), float(cost)) for minute, a, other, cost in rows}


def calls_and_tokens_since(
    session: Session, team_id: uuid.UUID, since: datetime
) -> tuple[int, int]:
    """The team's LLM calls and tokens (prompt and completion) recorded from ``since`` on."""
    calls, tokens = session.execute(
        select(
            func.coalesce(func.sum(ActivityMinute.llm_calls), 0),
            func.coalesce(func.sum(ActivityMinute.tokens), 0),
        ).where(ActivityMinute.team_id == team_id, ActivityMinute.minute >= since)
    ).one()
    return int(calls), int(tokens)


def job_minutes(session: Session, job_id: uuid.UUID) -> dict[datetime, tuple[int, int, float]]:
    """{minute: (accepted, not accepted, cost)} of every minute the job wrote in."""
    rows = session.execute(
        select(
            JobMinute.minute,
            JobMinute.accepted,
            JobMinute.rejected + JobMinute.duplicates + JobMinute.failed,
            JobMinute.cost_usd,
        ).where(JobMinute.job_id == job_id)
    )
    return {minute: (int(a), int(other), float(cost)) for minute, a, other, cost in rows}


def session_secret(session: Session, key: str) -> str:
    """The deployment's secret for signing dashboard sessions, made by the first caller."""
    value = session.scalar(select(Deployment.value).where(Deployment.key == key))
    if value is None:
        session.execute(
            insert_ignoring_conflicts(session, Deployment.__table__).values(
                key=key, value={"secret": secrets.token_urlsafe(48)}, created_at=utcnow()
            )
        )
        value = session.scalar(select(Deployment.value).where(Deployment.key == key))
    assert value is not None
    return str(value["secret"])


def own_jobs(session: Session, team_id: uuid.UUID, ids: Sequence[str]) -> set[str]:
    """Which of these job ids (as workers publish them) are the team's."""
    parsed = []
    for value in ids:
        try:
            parsed.append(uuid.UUID(value))
        except ValueError:
            continue
    if not parsed:
        return set()
    found = session.scalars(select(Job.id).where(Job.team_id == team_id, Job.id.in_(parsed)))
    return {str(job_id) for job_id in found}
