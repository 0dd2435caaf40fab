from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from app.models.activity_minute import MinuteCounters
from app.models.base import Base, UTCDateTime


class JobMinute(MinuteCounters, Base):
    """What a job's writers recorded in one minute (UTC): its page's throughput chart.

    Added to by UPSERT with the team's ``ActivityMinute``, in the transaction that records
    the outcomes: a chart of a job's whole run reads its minutes, never its documents.
    """

    __tablename__ = "job_minute"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("job.id", ondelete="CASCADE"), primary_key=True
    )
    minute: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
