"""Every query on evaluation runs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.models import EvalRun
from app.models.base import utcnow


def add(session: Session, run: EvalRun) -> EvalRun:
    session.add(run)
    session.flush()
    return run


def get(session: Session, eval_id: uuid.UUID) -> EvalRun | None:
    return session.get(EvalRun, eval_id)


def list_for_team(
    session: Session, team_id: uuid.UUID, limit: int, before: datetime | None = None
) -> Sequence[EvalRun]:
    query = select(EvalRun).where(EvalRun.team_id == team_id)
    if before is not None:
        query = query.where(EvalRun.created_at < before)
    return session.scalars(query.order_by(EvalRun.created_at.desc()).limit(limit)).all()


def claim(session: Session, eval_id: uuid.UUID, now: datetime, stale: datetime) -> bool:
    """queued → running, or take over a running evaluation whose worker went quiet."""
    result = session.execute(
        update(EvalRun)
        .where(
            EvalRun.id == eval_id,
            or_(
                EvalRun.status == "queued",
                (EvalRun.status == "running") & (EvalRun.heartbeat_at < stale),
            ),
        )
        .values(status="running", started_at=now, heartbeat_at=now, error=None, requests_done=0)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def renew(
    session: Session, eval_id: uuid.UUID, claimed: datetime, now: datetime, done: int
) -> bool:
    """Write progress, only while the claim is still this worker's."""
    result = session.execute(
        update(EvalRun)
        .where(EvalRun.id == eval_id, EvalRun.status == "running", EvalRun.heartbeat_at == claimed)
        .values(heartbeat_at=now, requests_done=done)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def finish(
    session: Session,
    eval_id: uuid.UUID,
    claimed: datetime,
    *,
    status: str,
    results: dict[str, Any] | None = None,
    error: str | None = None,
    done: int | None = None,
) -> bool:
    values: dict[str, object] = {
        "status": status,
        "finished_at": utcnow(),
        "error": error,
        "results": results,
    }
    if done is not None:
        values["requests_done"] = done
    result = session.execute(
        update(EvalRun)
        .where(EvalRun.id == eval_id, EvalRun.status == "running", EvalRun.heartbeat_at == claimed)
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def stale(session: Session, queued_before: datetime, quiet_since: datetime) -> Sequence[uuid.UUID]:
    """Evaluations a worker should have taken by now: queued long ago, or running but quiet."""
    return session.scalars(
        select(EvalRun.id).where(
            or_(
                (EvalRun.status == "queued") & (EvalRun.created_at < queued_before),
                (EvalRun.status == "running") & (EvalRun.heartbeat_at < quiet_since),
            )
        )
    ).all()
