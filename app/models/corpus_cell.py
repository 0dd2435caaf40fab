from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

STANCES = ("aligned", "misaligned")
STATUSES = ("accepted", "rejected", "duplicate", "failed")
# One counter column per stance x status: "aligned_accepted", ... "misaligned_failed".
COUNTS = tuple(f"{stance}_{status}" for stance in STANCES for status in STATUSES)


class CorpusCell(Base):
    """How many of a dataset's documents of one scenario and surface form there are, by
    stance and status (a column each).

    Kept by the database itself: triggers on ``document`` (migration 0017) add every row
    inserted, move a row whose status changes, and take back every row deleted, in the
    statement that does it. So the counts agree with the documents whichever code path
    writes them, and the corpus page reads one row per scenario x form, never the documents.
    """

    __tablename__ = "corpus_cell"

    dataset_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("dataset.id", ondelete="CASCADE"), primary_key=True
    )
    scenario_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    surface_form: Mapped[str] = mapped_column(String(64), primary_key=True)
    aligned_accepted: Mapped[int] = mapped_column(BigInteger, default=0)
    aligned_rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    aligned_duplicate: Mapped[int] = mapped_column(BigInteger, default=0)
    aligned_failed: Mapped[int] = mapped_column(BigInteger, default=0)
    misaligned_accepted: Mapped[int] = mapped_column(BigInteger, default=0)
    misaligned_rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    misaligned_duplicate: Mapped[int] = mapped_column(BigInteger, default=0)
    misaligned_failed: Mapped[int] = mapped_column(BigInteger, default=0)
