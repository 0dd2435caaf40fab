"""Rebuilding a dataset's shared index (Postgres) from the stored signatures."""

from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from app.core.db import session_scope
from app.dedup import service
from app.dedup.lsh import BANDS, INDEX_ALGORITHM, to_bytes
from app.dedup.minhash import ALGORITHM, signatures
from app.dedup.service import rebuild_bands
from app.models import Dataset, Document, MinhashBand
from app.quality.canary import with_canary
from tests.dedup import factory


def bands(session: Session, dataset_id: uuid.UUID) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(MinhashBand)
            .where(MinhashBand.dataset_id == dataset_id)
        )
        or 0
    )


def test_rebuild_restores_detection_after_the_band_rows_are_lost() -> None:
    original = factory.text("original")
    with session_scope() as session:
        assert session.get_bind().dialect.name == "postgresql"
        made = factory.dataset(session)
        outcomes = factory.write_batch(session, made, [original, factory.text("other")])
    with session_scope() as session:
        assert bands(session, made.dataset_id) == 2 * BANDS
        session.execute(delete(MinhashBand).where(MinhashBand.dataset_id == made.dataset_id))

    with session_scope() as session:  # without its bands the index finds nothing
        assert factory.write_batch(session, made, [factory.near_copy(original)])[0][1] is None
        session.rollback()

    with session_scope() as session:
        assert rebuild_bands(session, made.dataset_id) == 2
    with session_scope() as session:
        assert bands(session, made.dataset_id) == 2 * BANDS
        match = factory.write_batch(session, made, [factory.near_copy(original)])[0][1]
        assert match is not None
        assert match[0] == outcomes[0][0]
        session.rollback()


def test_rebuild_recomputes_signatures_of_an_older_algorithm(
    caplog: pytest.LogCaptureFixture,
) -> None:
    original = factory.text("original")
    canary = "5a1d-guid"
    with session_scope() as session:
        made = factory.dataset(session)
        first = factory.document(
            session,
            made,
            with_canary(original, canary),
            minhash=bytes(512),  # what an older algorithm computed, say
            meta={"canary": canary},
        )
        session.execute(
            insert(MinhashBand).values(dataset_id=made.dataset_id, band_key=7, document_id=first)
        )
        session.execute(
            update(Dataset)
            .where(Dataset.id == made.dataset_id)
            .values(dedup_algorithm="pf-minhash-1/rensa-2/w5/p128/s20261122")
        )

    # A worker meeting the older algorithm rebuilds at once, so the near copy is caught.
    with session_scope() as session, caplog.at_level(logging.WARNING, "app.dedup.service"):
        match = factory.write_batch(session, made, [factory.near_copy(original)])[0][1]
        assert match is not None
        assert match[0] == first
        session.rollback()  # and with it the rebuild: the explicit one below starts over
    old = "pf-minhash-1/rensa-2/w5/p128/s20261122"
    assert caplog.messages == [
        f"dataset {made.dataset_id} was indexed with {old}; rebuilding its index as "
        f"{INDEX_ALGORITHM}",
        f"dataset {made.dataset_id}: recomputing {old} signatures as {ALGORITHM}",
    ]

    with session_scope() as session:
        assert rebuild_bands(session, made.dataset_id) == 1
    with session_scope() as session:
        stored = session.scalar(select(Document.minhash).where(Document.id == first))
        # Signed as the pipeline signs: before the canary line was added.
        assert stored == to_bytes(signatures([original]).rows[0])
        pinned = session.scalar(
            select(Dataset.dedup_algorithm).where(Dataset.id == made.dataset_id)
        )
        assert pinned == INDEX_ALGORITHM
        assert bands(session, made.dataset_id) == BANDS  # the stale row is gone
        match = factory.write_batch(session, made, [factory.near_copy(original)])[0][1]
        assert match is not None
        assert match[0] == first
        session.rollback()


def test_a_rebuild_in_several_batches_indexes_every_document(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service, "_REBUILD_BATCH", 2)
    with session_scope() as session:
        made = factory.dataset(session)
        for i in range(5):
            factory.document(session, made, factory.text(f"batched {i}"))
    with session_scope() as session:
        assert rebuild_bands(session, made.dataset_id) == 5
    with session_scope() as session:
        assert bands(session, made.dataset_id) == 5 * BANDS
