"""Every query of the dashboard's own: its audit log and the overview's counts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from app.models import AdminAudit, Job
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
