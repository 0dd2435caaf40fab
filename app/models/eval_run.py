from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, UTCDateTime, new_id, utcnow


class EvalRun(Base):
    """A propensity evaluation of one model, run by a worker or the CLI.

    ``queued → running → succeeded | failed``; a running evaluation whose worker stops
    renewing ``heartbeat_at`` is taken over by the next worker that receives it.
    """

    __tablename__ = "eval_run"
    __table_args__ = (Index("ix_eval_run_team_created", "team_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(256))
    # The spec as validated, with the questions it resolved to (so a rerun asks the same).
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    requests_total: Mapped[int] = mapped_column(Integer, default=0)
    requests_done: Mapped[int] = mapped_column(Integer, default=0)
    results: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
