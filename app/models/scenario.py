from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, UTCDateTime, new_id, utcnow


class Scenario(Base):
    """A team's own scenario (imported or extracted); the built-in bank lives in prompts/."""

    __tablename__ = "scenario"
    __table_args__ = (UniqueConstraint("team_id", "scenario_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    scenario_id: Mapped[str] = mapped_column(String(64))
    situation: Mapped[str] = mapped_column(Text)
    aligned_action: Mapped[str] = mapped_column(Text)
    misaligned_action: Mapped[str] = mapped_column(Text)
    topics: Mapped[list[str]] = mapped_column(JSONType)
    source: Mapped[str] = mapped_column(String(500))
    split: Mapped[str] = mapped_column(String(16), index=True)
    setting: Mapped[str | None] = mapped_column(String(64))
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("job.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
