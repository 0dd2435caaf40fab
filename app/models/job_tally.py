from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class JobTally(Base):
    """A job's progress counters for one bucket of outcomes (see app/jobs/tally.py).

    Added to by UPSERT in the transaction that records the outcomes they count, so they
    always agree with the job's documents and results, and a read never scans those.
    """

    __tablename__ = "job_tally"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("job.id", ondelete="CASCADE"), primary_key=True
    )
    bucket: Mapped[str] = mapped_column(String(200), primary_key=True)
    # Documents (generation) or item results (extraction) in this bucket.
    items: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    llm_calls: Mapped[int] = mapped_column(BigInteger, default=0)
    llm_errors: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    # Extraction results: the scenarios they yielded.
    scenarios: Mapped[int] = mapped_column(BigInteger, default=0)
