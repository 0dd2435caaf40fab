from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, UTCDateTime, utcnow


class WorkItem(Base):
    """One document attempt, keyed by ``(job_id, item_index)``.

    States: pending -> leased -> done | failed; an expired lease returns to pending; cancelling
    the job moves pending and leased items to cancelled (a result that still arrives for a
    leased one closes it as done | failed).
    """

    __tablename__ = "work_item"
    # By state, in index order: a worker leases a job's lowest pending items without
    # stepping over the (many) done ones.
    __table_args__ = (Index("ix_work_item_job_state_index", "job_id", "state", "item_index"),)

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("job.id", ondelete="CASCADE"), primary_key=True
    )
    item_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan: Mapped[dict[str, Any]] = mapped_column(JSONType)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Outcome of items that produce no document row (scenario extraction).
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
