from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class MinhashBand(Base):
    """Near-duplicate index: an accepted document's LSH band buckets within its dataset."""

    __tablename__ = "minhash_band"
    # The primary key (dataset_id, band_key, document_id) also serves bucket lookups.

    dataset_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("dataset.id", ondelete="CASCADE"), primary_key=True
    )
    band_key: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    document_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
