from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, UTCDateTime, new_id, utcnow


class AdminAudit(Base):
    """One action taken in the admin dashboard: who (the signed-in key), what, on what."""

    __tablename__ = "admin_audit"
    __table_args__ = (Index("ix_admin_audit_team_at", "team_id", "at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    # The key that signed in; kept when the key is deleted, as the log outlives it.
    key_id: Mapped[uuid.UUID | None] = mapped_column()
    key_prefix: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
