"""The corpus page's queries: the dataset's cells (kept by triggers, see CorpusCell) and
bounded reads of its duplicates and decontamination hits through partial indexes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import case, func, literal, select, union_all
from sqlalchemy.orm import Session

from app.models import CorpusCell, Document
from app.models.corpus_cell import COUNTS


class Summed(NamedTuple):
    """One scenario's, one surface form's or (``kind`` "all") the whole dataset's documents."""

    kind: str  # "scenario", "form" or "all"
    name: str
    aligned: int  # accepted, by stance
    misaligned: int
    rejected: int
    duplicate: int
    failed: int
    covering: int  # scenario x form pairs with an accepted document
    covered: int  # scenario x form x stance cells with an accepted document
    any_aligned: int  # documents of each stance, whatever their status
    any_misaligned: int


def summed(session: Session, dataset_id: uuid.UUID) -> list[Summed]:
    """The dataset's cells summed by scenario, by surface form and in all, in one statement:
    a page reads a few hundred rows, not one per scenario x form (15,000 and more)."""
    c = CorpusCell
    every = [getattr(c, column) for column in COUNTS]
    cells = (
        select(
            c.scenario_id.label("scenario"),
            c.surface_form.label("form"),
            c.aligned_accepted.label("a"),
            c.misaligned_accepted.label("m"),
            (c.aligned_rejected + c.misaligned_rejected).label("r"),
            (c.aligned_duplicate + c.misaligned_duplicate).label("d"),
            (c.aligned_failed + c.misaligned_failed).label("f"),
            (
                c.aligned_accepted + c.aligned_rejected + c.aligned_duplicate + c.aligned_failed
            ).label("aa"),
            (
                c.misaligned_accepted
                + c.misaligned_rejected
                + c.misaligned_duplicate
                + c.misaligned_failed
            ).label("am"),
        )
        .where(c.dataset_id == dataset_id, sum(every[1:], every[0]) > 0)
        .subquery()
    )

    def sums(kind: str, name: Any) -> Any:
        accepted = cells.c.a + cells.c.m
        return select(
            literal(kind),
            name,
            func.sum(cells.c.a),
            func.sum(cells.c.m),
            func.sum(cells.c.r),
            func.sum(cells.c.d),
            func.sum(cells.c.f),
            func.count().filter(accepted > 0),
            func.sum(case((cells.c.a > 0, 1), else_=0) + case((cells.c.m > 0, 1), else_=0)),
            func.sum(cells.c.aa),
            func.sum(cells.c.am),
        )

    statement = union_all(
        sums("scenario", cells.c.scenario).group_by(cells.c.scenario),
        sums("form", cells.c.form).group_by(cells.c.form),
        sums("all", literal("")),
    )
    return [
        Summed(kind, name, *(int(value or 0) for value in numbers))
        for kind, name, *numbers in session.execute(statement)
    ]


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


def contamination_hits(
    session: Session, dataset_id: uuid.UUID, limit: int, sample: int
) -> tuple[int, int, list[Any]]:
    """Evaluation items the dataset's generations leaked most, among its first ``sample``
    hits (each needs its row read): (hits in all, hits read, [(item, documents)])."""
    leaked = (Document.dataset_id == dataset_id, Document.reason == "contaminated")
    total = session.scalar(select(func.count()).where(*leaked)) or 0  # the partial index only
    read = (
        select(Document.contamination["item"].as_string().label("item"))
        .where(*leaked)
        .limit(sample)
        .subquery()
    )
    hits = func.count().label("hits")
    items = session.execute(
        select(read.c.item, hits)
        .group_by(read.c.item)
        .order_by(hits.desc(), read.c.item)
        .limit(limit)
    )
    return int(total), min(int(total), sample), list(items)


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
