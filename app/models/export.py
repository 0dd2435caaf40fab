from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, UTCDateTime, new_id, utcnow


class Export(Base):
    """A dataset version tokenized into training formats, written by a worker.

    ``queued → running → succeeded | failed``; a running export whose worker stops renewing
    ``heartbeat_at`` is taken over by the next worker that receives it.
    """

    __tablename__ = "export"
    # One export per version and request: asking again returns it.
    __table_args__ = (UniqueConstraint("dataset_id", "version", "request_sha256"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    dataset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    tokenizer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tokenizer.id", ondelete="CASCADE"))
    # What was asked: formats, EOS, text column (as validated), and its sha256.
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    request_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    documents_total: Mapped[int] = mapped_column(BigInteger, default=0)
    documents_done: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    index_key: Mapped[str | None] = mapped_column(String(512))
    index_sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
