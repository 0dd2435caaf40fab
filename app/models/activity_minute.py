from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime


class MinuteCounters:
    """What writers recorded in one minute (UTC): the columns of a per-minute counter."""

    accepted: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    duplicates: Mapped[int] = mapped_column(BigInteger, default=0)
    failed: Mapped[int] = mapped_column(BigInteger, default=0)
    llm_calls: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)  # prompt and completion
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)


class ActivityMinute(MinuteCounters, Base):
    """What a team's writers recorded in one minute (UTC), for the dashboard's chart.

    Added to by UPSERT in the transaction that records the outcomes, like the job counters:
    a chart of the last hours reads a few hundred rows, never the documents.
    """

    __tablename__ = "activity_minute"

    team_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("team.id", ondelete="CASCADE"), primary_key=True
    )
    minute: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
