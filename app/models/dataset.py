from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime, new_id, utcnow


class Dataset(Base):
    __tablename__ = "dataset"
    __table_args__ = (UniqueConstraint("team_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    # The MinHash algorithm its near-duplicate index was built with (pinned on first use).
    dedup_algorithm: Mapped[str | None] = mapped_column(String(100))
    # Raised whenever stored signatures or the index are rebuilt: processes holding the
    # index in memory (embedded mode) reload it when it changes.
    dedup_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
