"""Every query of the shared near-duplicate index."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from app.core.sql import insert_ignoring_conflicts
from app.models import Dataset, Document, MinhashBand


def lock_dataset(session: Session, dataset_id: uuid.UUID) -> None:
    """Serialise near-duplicate decisions per dataset until this transaction ends.

    Postgres: a transaction-scoped advisory lock, so two workers accepting near copies at the
    same moment cannot both win. SQLite has a single writer already.
    """
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(dataset_id.bytes[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def buckets(
    session: Session, dataset_id: uuid.UUID, keys: Sequence[int]
) -> dict[int, list[uuid.UUID]]:
    found: dict[int, list[uuid.UUID]] = {}
    if not keys:
        return found
    rows = session.execute(
        select(MinhashBand.band_key, MinhashBand.document_id).where(
            MinhashBand.dataset_id == dataset_id, MinhashBand.band_key.in_(keys)
        )
    )
    for key, document_id in rows:
        found.setdefault(key, []).append(document_id)
    return found


def signatures_of(session: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, bytes]:
    if not ids:
        return {}
    rows = session.execute(
        select(Document.id, Document.minhash).where(
            Document.id.in_(ids), Document.minhash.is_not(None)
        )
    )
    return {row.id: row.minhash for row in rows}


def add_many(
    session: Session, dataset_id: uuid.UUID, entries: Sequence[tuple[uuid.UUID, Sequence[int]]]
) -> None:
    rows = [
        {"dataset_id": dataset_id, "band_key": key, "document_id": document_id}
        for document_id, keys in entries
        for key in keys
    ]
    if rows:
        # The Core table: thousands of rows per batch need no ORM bookkeeping.
        session.execute(insert_ignoring_conflicts(session, MinhashBand.__table__), rows)


def pin_algorithm(session: Session, dataset_id: uuid.UUID, algorithm: str) -> str:
    """Record the algorithm on first use; return the one the index was built with."""
    session.execute(
        update(Dataset)
        .where(Dataset.id == dataset_id, Dataset.dedup_algorithm.is_(None))
        .values(dedup_algorithm=algorithm)
    )
    return session.scalar(select(Dataset.dedup_algorithm).where(Dataset.id == dataset_id)) or ""
