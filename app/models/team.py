from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime, new_id, utcnow


class Team(Base):
    __tablename__ = "team"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # What the team may spend on LLM calls per calendar month (UTC); None: no cap.
    monthly_budget_usd: Mapped[float | None] = mapped_column(Float)
    # Its quotas, set by an operator; None: the deployment's (PRIORFORGE_TEAM_MAX_...).
    max_active_jobs: Mapped[int | None] = mapped_column(Integer)
    max_documents_per_job: Mapped[int | None] = mapped_column(BigInteger)
