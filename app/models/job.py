from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, UTCDateTime, new_id, utcnow


class Job(Base):
    """A generation job. Progress counts live in job_tally, kept in step with its documents."""

    __tablename__ = "job"
    __table_args__ = (
        UniqueConstraint("team_id", "idempotency_key"),
        # The job listing's cursor order, for a team and for one of its datasets.
        Index("ix_job_team_created", "team_id", "created_at", "id"),
        Index("ix_job_dataset_created", "dataset_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    # None for jobs that publish no documents (scenario extraction).
    dataset_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("dataset.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(32), default="generate")
    name: Mapped[str | None] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    # Accepted documents wanted, and the attempt budget (items that may ever be planned).
    requested: Mapped[int] = mapped_column(Integer)
    max_items: Mapped[int] = mapped_column(Integer)
    # Items planned so far; advanced only by compare-and-set so two workers never overplan.
    planned_items: Mapped[int] = mapped_column(Integer, default=0)
    # The most one item can cost (its prompt and max_tokens, and the judge's read): what each
    # item in flight holds against the job's and the team's budgets until its outcome is in.
    reserve_usd_per_item: Mapped[float] = mapped_column(Float, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finalizing_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reconciled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
