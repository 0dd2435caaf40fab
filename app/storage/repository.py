"""Every query about the deployment's object store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.sql import insert_ignoring_conflicts
from app.models import Deployment, Shard
from app.models.base import utcnow

STORE_KEY = "store"


def get_store_binding(session: Session) -> dict[str, Any] | None:
    return session.scalar(select(Deployment.value).where(Deployment.key == STORE_KEY))


def insert_store_binding(session: Session, value: dict[str, Any]) -> bool:
    """True if this call created the row (which then stays locked until the commit)."""
    # SQLAlchemy reports an INSERT's rowcount only when asked to (otherwise -1).
    result = session.execute(
        insert_ignoring_conflicts(session, Deployment.__table__)
        .values(key=STORE_KEY, value=value, created_at=utcnow())
        .execution_options(preserve_rowcount=True)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def recent_shard_keys(session: Session, limit: int) -> Sequence[str]:
    return session.scalars(
        select(Shard.object_key)
        .where(Shard.committed.is_(True))
        .order_by(Shard.created_at.desc())
        .limit(limit)
    ).all()
