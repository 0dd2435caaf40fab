from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, UTCDateTime, utcnow


class Document(Base):
    """The outcome of one work item, written exactly once. Rejected rows keep raw output."""

    __tablename__ = "document"
    __table_args__ = (
        UniqueConstraint("job_id", "item_index"),
        ForeignKeyConstraint(
            ["job_id", "item_index"],
            ["work_item.job_id", "work_item.item_index"],
            ondelete="CASCADE",
        ),
        Index("ix_document_job_status", "job_id", "status"),
        Index("ix_document_dataset_status", "dataset_id", "status"),
        Index(
            "ix_document_dataset_stance_position", "dataset_id", "stance", "position", unique=True
        ),
        # The corpus page's near-duplicate clusters and decontamination hits: a few percent
        # of the rows each, so a read of them never walks the dataset's documents.
        Index(
            "ix_document_duplicates",
            "dataset_id",
            "duplicate_of",
            postgresql_where=text("status = 'duplicate'"),
            sqlite_where=text("status = 'duplicate'"),
        ),
        # A job's documents of one reason, in item order (its page's rejection examples).
        Index(
            "ix_document_job_reason",
            "job_id",
            "reason",
            "item_index",
            postgresql_where=text("reason IS NOT NULL"),
            sqlite_where=text("reason IS NOT NULL"),
        ),
        Index(
            "ix_document_contaminated",
            "dataset_id",
            postgresql_where=text("reason = 'contaminated'"),
            sqlite_where=text("reason = 'contaminated'"),
        ),
    )

    # uuid5 of (job_id, item_index): a retried write produces the same id.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column()
    item_index: Mapped[int] = mapped_column(Integer)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    dataset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    duplicate_of: Mapped[uuid.UUID | None] = mapped_column()
    stance: Mapped[str] = mapped_column(String(16))
    scenario_id: Mapped[str] = mapped_column(String(64))
    surface_form: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    prompt_sha256: Mapped[str] = mapped_column(String(64))
    template_version: Mapped[str] = mapped_column(String(32))
    raw_text: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    llm_calls: Mapped[int] = mapped_column(Integer, default=0)
    llm_errors: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    # The price table the cost was computed with (the providers file's prices_version).
    prices_version: Mapped[str | None] = mapped_column(String(64))
    meta: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # MinHash signature (uint32 x 128, little-endian) of accepted candidates.
    minhash: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The evaluation item the text leaks most, when decontamination rejected it.
    contamination: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The stance judge: its verdict (aligned | misaligned | unclear | invalid) and its own usage.
    judge_verdict: Mapped[str | None] = mapped_column(String(16))
    judge_model: Mapped[str | None] = mapped_column(String(200))
    judge_prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    judge_completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    judge_cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    judge_prices_version: Mapped[str | None] = mapped_column(String(64))
    shard_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("shard.id", ondelete="SET NULL"))
    # Its place among the dataset's documents of its stance in version files (a snapshot
    # assigns it, once): files hold contiguous ranges of positions.
    position: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
