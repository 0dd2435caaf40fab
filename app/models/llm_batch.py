from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, UTCDateTime, new_id, utcnow


class LlmBatch(Base):
    """One file of a job's items sent through a provider's Batch API.

    States: creating -> submitted -> done; ``creating`` rows whose provider call never
    returned give their items back once stale. The items it holds stay leased to
    ``batch:<id>`` until its results are recorded.
    """

    __tablename__ = "llm_batch"
    __table_args__ = (Index("ix_llm_batch_job_status", "job_id", "status"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="creating")
    indices: Mapped[list[int]] = mapped_column(JSONType)
    requests: Mapped[int] = mapped_column(Integer)
    provider_batch_id: Mapped[str | None] = mapped_column(String(128))
    input_file_id: Mapped[str | None] = mapped_column(String(128))
    # The provider's status when last polled, and what came back.
    provider_status: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
