"""The corpus page's queries: the dataset's cells (kept by triggers, see CorpusCell) and
bounded reads of its duplicates and decontamination hits through partial indexes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import CorpusCell, Document


class Pair(NamedTuple):
    """A scenario x surface form's documents: accepted by stance, the rest by status, and
    all of each stance (to count the stances the dataset's jobs drew)."""

    scenario_id: str
    surface_form: str
    aligned: int
    misaligned: int
    rejected: int
    duplicate: int
    failed: int
    any_aligned: int
    any_misaligned: int


def pairs(session: Session, dataset_id: uuid.UUID) -> list[Pair]:
    """The dataset's documents by scenario x surface form, one row each: every figure of
    the corpus page is summed from these."""
    c = CorpusCell
    statement = select(
        c.scenario_id,
        c.surface_form,
        c.aligned_accepted,
        c.misaligned_accepted,
        c.aligned_rejected + c.misaligned_rejected,
        c.aligned_duplicate + c.misaligned_duplicate,
        c.aligned_failed + c.misaligned_failed,
        c.aligned_accepted + c.aligned_rejected + c.aligned_duplicate + c.aligned_failed,
        c.misaligned_accepted
        + c.misaligned_rejected
        + c.misaligned_duplicate
        + c.misaligned_failed,
    ).where(c.dataset_id == dataset_id)
    return [Pair(*row) for row in session.execute(statement) if any(row[2:7])]


def largest_clusters(session: Session, dataset_id: uuid.UUID, limit: int) -> list[Any]:
    """The documents most often duplicated, with how many copies each: (id, copies)."""
    copies = func.count().label("copies")
    return list(
        session.execute(
            select(Document.duplicate_of, copies)
            .where(Document.dataset_id == dataset_id, Document.status == "duplicate")
            .group_by(Document.duplicate_of)
            .order_by(copies.desc(), Document.duplicate_of)
            .limit(limit)
        )
    )


def documents_by_id(session: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
    rows = session.execute(
        select(
            Document.id,
            Document.job_id,
            Document.item_index,
            Document.status,
            Document.stance,
            Document.scenario_id,
            Document.surface_form,
            func.substr(func.coalesce(Document.text, Document.raw_text, ""), 1, 240),
        ).where(Document.id.in_(ids))
    )
    return {row[0]: row for row in rows}


def copies_of(
    session: Session, dataset_id: uuid.UUID, originals: Sequence[uuid.UUID], per: int
) -> dict[uuid.UUID, list[Any]]:
    """A few copies of each original: (id, reason, detail, its opening)."""
    found: dict[uuid.UUID, list[Any]] = {}
    for original in originals:
        found[original] = list(
            session.execute(
                select(
                    Document.id,
                    Document.reason,
                    Document.detail,
                    func.substr(func.coalesce(Document.text, Document.raw_text, ""), 1, 240),
                )
                .where(
                    Document.dataset_id == dataset_id,
                    Document.status == "duplicate",
                    Document.duplicate_of == original,
                )
                .limit(per)
            )
        )
    return found


def contamination_hits(session: Session, dataset_id: uuid.UUID, limit: int) -> list[Any]:
    """Evaluation items the dataset's generations leaked most: (item, documents)."""
    item = Document.contamination["item"].as_string()
    hits = func.count().label("hits")
    return list(
        session.execute(
            select(item, hits)
            .where(Document.dataset_id == dataset_id, Document.reason == "contaminated")
            .group_by(item)
            .order_by(hits.desc(), item)
            .limit(limit)
        )
    )


def contaminated(session: Session, dataset_id: uuid.UUID, limit: int) -> list[Any]:
    """A few documents decontamination rejected: (id, the leak as found, their opening)."""
    return list(
        session.execute(
            select(
                Document.id,
                Document.contamination,
                Document.detail,
                func.substr(func.coalesce(Document.raw_text, Document.text, ""), 1, 240),
            )
            .where(Document.dataset_id == dataset_id, Document.reason == "contaminated")
            .limit(limit)
        )
    )
