"""Every query of the near-duplicate index: band buckets, stored signatures, the algorithm."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    delete,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session

from app.core.sql import array_literal
from app.models import Dataset, Document, MinhashBand

ACCEPTED = "accepted"
# SQLite's implicit row number: it only grows as documents are written, so it marks how far
# an embedded process has read the documents table.
_ROWID: ColumnElement[int] = literal_column("document.rowid", BigInteger)


def is_embedded(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def lock_dataset(session: Session, dataset_id: uuid.UUID) -> None:
    """Serialise near-duplicate decisions per dataset until this transaction ends.

    Postgres: a transaction-scoped advisory lock, so two workers accepting near copies at the
    same moment cannot both win. SQLite has one writer at a time: a write takes that lock now,
    before anything is read, so what is read next is not stale by the time it is acted on.
    """
    if is_embedded(session):
        session.execute(
            sql_update(Dataset)
            .where(Dataset.id == dataset_id)
            .values(dedup_algorithm=Dataset.dedup_algorithm)
        )
        return
    key = int.from_bytes(dataset_id.bytes[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def pin_algorithm(session: Session, dataset_id: uuid.UUID, algorithm: str) -> str:
    """Record the algorithm on first use; return the one the index was built with."""
    if not is_embedded(session):
        # One round trip. The outer SELECT sees the row as it was before the UPDATE.
        pinned = session.scalar(
            text(
                "WITH pinned AS (UPDATE dataset SET dedup_algorithm = :algorithm"
                " WHERE id = :dataset_id AND dedup_algorithm IS NULL RETURNING dedup_algorithm)"
                " SELECT coalesce((SELECT dedup_algorithm FROM pinned),"
                " (SELECT dedup_algorithm FROM dataset WHERE id = :dataset_id))"
            ),
            {"algorithm": algorithm, "dataset_id": dataset_id},
        )
        return str(pinned or "")
    session.execute(
        sql_update(Dataset)
        .where(Dataset.id == dataset_id, Dataset.dedup_algorithm.is_(None))
        .values(dedup_algorithm=algorithm)
    )
    return session.scalar(select(Dataset.dedup_algorithm).where(Dataset.id == dataset_id)) or ""


def set_algorithm(session: Session, dataset_id: uuid.UUID, algorithm: str) -> None:
    session.execute(
        sql_update(Dataset).where(Dataset.id == dataset_id).values(dedup_algorithm=algorithm)
    )


def candidates(
    session: Session, dataset_id: uuid.UUID, keys: Sequence[int]
) -> list[tuple[uuid.UUID, bytes]]:
    """Postgres: (id, signature) of the dataset's documents with any of these band keys."""
    if not keys:
        return []
    rows = session.execute(
        text(
            "SELECT id, minhash FROM document WHERE minhash IS NOT NULL AND id IN"
            " (SELECT document_id FROM minhash_band WHERE dataset_id = :dataset_id"
            " AND band_key = ANY(CAST(:keys AS bigint[])))"
            " ORDER BY id"
        ),
        {"dataset_id": dataset_id, "keys": array_literal(keys)},
    )
    return [(document_id, minhash) for document_id, minhash in rows]


def signatures_of(session: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, bytes]:
    if not ids:
        return {}
    rows = session.execute(
        select(Document.id, Document.minhash).where(
            Document.id.in_(ids), Document.minhash.is_not(None)
        )
    )
    return {row.id: row.minhash for row in rows}


def texts_of(
    session: Session, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, dict[str, Any]]]:
    if not ids:
        return {}
    rows = session.execute(
        select(Document.id, Document.text, Document.meta).where(Document.id.in_(ids))
    )
    return {row.id: (row.text or "", row.meta or {}) for row in rows}


def add_bands(
    session: Session, dataset_id: uuid.UUID, document_ids: Sequence[uuid.UUID], keys: Sequence[int]
) -> None:
    """Postgres: insert (band key, document) rows; ``keys`` holds BANDS keys per document."""
    if not document_ids:
        return
    # One statement, two array parameters: thousands of rows in one round trip. The n-th key
    # belongs to document (n - 1) / BANDS + 1 (arrays count from 1).
    session.execute(
        text(
            "INSERT INTO minhash_band (dataset_id, band_key, document_id)"
            " SELECT :dataset_id, band.key,"
            " (CAST(:documents AS uuid[]))[(band.n - 1) / :per_document + 1]"
            " FROM unnest(CAST(:keys AS bigint[])) WITH ORDINALITY AS band(key, n)"
            " ON CONFLICT DO NOTHING"
        ),
        {
            "dataset_id": dataset_id,
            "documents": array_literal(document_ids),
            "keys": array_literal(keys),
            "per_document": len(keys) // len(document_ids),
        },
    )


def delete_bands(session: Session, dataset_id: uuid.UUID) -> int:
    result = session.execute(delete(MinhashBand).where(MinhashBand.dataset_id == dataset_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


def count_accepted(session: Session, dataset_id: uuid.UUID) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Document)
            .where(Document.dataset_id == dataset_id, Document.status == ACCEPTED)
        )
        or 0
    )


def accepted_since(
    session: Session, dataset_id: uuid.UUID, after: int
) -> list[tuple[int, uuid.UUID, bytes | None]]:
    """SQLite: (rowid, id, signature) of the dataset's accepted documents past ``after``."""
    rows = session.execute(
        select(_ROWID, Document.id, Document.minhash)
        .where(Document.dataset_id == dataset_id, Document.status == ACCEPTED, _ROWID > after)
        .order_by(_ROWID)
    )
    return [(int(rowid), document_id, minhash) for rowid, document_id, minhash in rows]


def accepted_ids(session: Session, dataset_id: uuid.UUID) -> list[uuid.UUID]:
    """The dataset's accepted documents, oldest first."""
    return list(
        session.scalars(
            select(Document.id)
            .where(Document.dataset_id == dataset_id, Document.status == ACCEPTED)
            .order_by(Document.created_at, Document.id)
        )
    )


def store_signatures(session: Session, signatures: Sequence[tuple[uuid.UUID, bytes]]) -> None:
    if signatures:
        session.execute(
            sql_update(Document),
            [{"id": document_id, "minhash": minhash} for document_id, minhash in signatures],
        )


def generation(session: Session, dataset_id: uuid.UUID) -> int:
    return session.scalar(select(Dataset.dedup_generation).where(Dataset.id == dataset_id)) or 0


def bump_generation(session: Session, dataset_id: uuid.UUID) -> None:
    session.execute(
        sql_update(Dataset)
        .where(Dataset.id == dataset_id)
        .values(dedup_generation=Dataset.dedup_generation + 1)
    )
