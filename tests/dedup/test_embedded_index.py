"""Embedded mode (SQLite): a process-wide in-memory index per dataset, from stored signatures."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.core.db import make_engine
from app.dedup import repository, service
from app.dedup.lsh import INDEX_ALGORITHM, to_bytes
from app.dedup.minhash import signatures
from app.models import Dataset, Document, MinhashBand
from app.quality.canary import with_canary
from tests.dedup import factory


def cached(engine: Engine, made: factory.Seeded) -> service._Embedded:
    with Session(engine) as session:
        return service._EMBEDDED[service._cache_key(session, made.dataset_id)]


def test_loads_stored_signatures_and_catches_up_with_other_writers(engine: Engine) -> None:
    original, later = factory.text("original"), factory.text("later")
    with Session(engine) as session:
        made = factory.dataset(session)
        first = factory.document(session, made, original)
        # Neither a duplicate nor a rejected document is part of the index.
        factory.document(session, made, factory.text("dup"), status="duplicate")
        factory.document(session, made, factory.text("rejected"), status="rejected")
        session.commit()

    with Session(engine) as session:
        outcomes = factory.write_batch(
            session,
            made,
            [factory.near_copy(original), factory.near_copy(factory.text("dup")), "fresh words"],
        )
        session.commit()
    assert outcomes[0][1] is not None
    assert outcomes[0][1][0] == first
    assert outcomes[1][1] is None
    assert outcomes[2][1] is None
    state = cached(engine, made)
    index = state.index

    # Another process commits a document through its own connection.
    other = make_engine(str(engine.url))
    with Session(other) as session:
        written = factory.document(session, made, later)
        session.commit()
    other.dispose()

    with Session(engine) as session:
        outcomes = factory.write_batch(session, made, [factory.near_copy(later, seed=1)])
        session.commit()
    assert outcomes[0][1] is not None
    assert outcomes[0][1][0] == written
    state = cached(engine, made)
    assert state.index is index, "caught up in place, not reloaded"
    assert state.accepted == 4  # original, the two new ones of the first batch, later
    assert written in state.index
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(MinhashBand)) == 0


def test_a_document_leaving_the_accepted_set_is_noticed(engine: Engine) -> None:
    original = factory.text("original")
    with Session(engine) as session:
        made = factory.dataset(session)
        first = factory.document(session, made, original)
        session.commit()
    with Session(engine) as session:
        assert factory.write_batch(session, made, [factory.near_copy(original)])[0][1] is not None
        session.rollback()

    with Session(engine) as session:  # e.g. a later quality pass rejects it
        session.execute(update(Document).where(Document.id == first).values(status="rejected"))
        session.commit()

    with Session(engine) as session:
        assert factory.write_batch(session, made, [factory.near_copy(original)])[0][1] is None
        session.commit()
    assert first not in cached(engine, made).index


def test_a_batch_sees_its_own_additions_but_the_index_only_what_was_committed(
    engine: Engine,
) -> None:
    original = factory.text("original")
    with Session(engine) as session:
        made = factory.dataset(session)
        session.commit()
    with Session(engine) as session:
        outcomes = factory.write_batch(session, made, [original, factory.near_copy(original)])
        assert outcomes[0][1] is None
        assert outcomes[1][1] is not None
        assert outcomes[1][1][0] == outcomes[0][0]
        session.rollback()  # the batch failed: nothing of it was committed

    with Session(engine) as session:
        outcomes = factory.write_batch(session, made, [factory.near_copy(original, seed=2)])
        assert outcomes[0][1] is None
        session.commit()


def test_the_dataset_lock_is_the_databases_write_lock(engine: Engine) -> None:
    with Session(engine) as session:
        made = factory.dataset(session)
        session.commit()
    with Session(engine) as session:
        repository.lock_dataset(session, made.dataset_id)
        # Another writer now waits for this transaction instead of racing it, so what the
        # index reads next cannot go stale before the batch commits.
        other = make_engine(str(engine.url))
        with other.connect() as connection:
            connection.execute(text("PRAGMA busy_timeout = 100"))
            with pytest.raises(OperationalError, match="locked"):
                connection.execute(update(Dataset).values(name="other"))
        other.dispose()
        session.commit()


def test_signatures_of_an_older_algorithm_are_recomputed_from_the_texts(engine: Engine) -> None:
    original = factory.text("original")
    canary = "0f2c6d3e-guid"
    with Session(engine) as session:
        made = factory.dataset(session)
        first = factory.document(
            session,
            made,
            with_canary(original, canary),
            minhash=bytes(512),  # whatever the old algorithm computed
            meta={"canary": canary},
        )
        session.execute(
            update(Dataset)
            .where(Dataset.id == made.dataset_id)
            .values(dedup_algorithm="pf-minhash-1/rensa-2/w5/p128/s20261122")
        )
        session.commit()

    with Session(engine) as session:
        outcomes = factory.write_batch(session, made, [factory.near_copy(original)])
        session.commit()
    assert outcomes[0][1] is not None
    assert outcomes[0][1][0] == first
    with Session(engine) as session:
        # Signed as the pipeline signs: before the canary line was added.
        stored = session.scalar(select(Document.minhash).where(Document.id == first))
        assert stored == to_bytes(signatures([original]).rows[0])
        pinned = session.scalar(
            select(Dataset.dedup_algorithm).where(Dataset.id == made.dataset_id)
        )
        assert pinned == INDEX_ALGORITHM


def test_rebuild_in_embedded_mode_reloads_the_process_index(engine: Engine) -> None:
    with Session(engine) as session:
        made = factory.dataset(session)
        for name in ("a", "b", "c"):
            factory.document(session, made, factory.text(name))
        factory.write_batch(session, made, [factory.text("d")])
        session.commit()
    assert cached(engine, made).accepted == 3
    with Session(engine) as session:
        assert service.rebuild_bands(session, made.dataset_id) == 4
        session.commit()
        key = service._cache_key(session, made.dataset_id)
    assert key not in service._EMBEDDED


def test_threads_writing_near_copies_at_once_keep_exactly_one(engine: Engine) -> None:
    originals = [factory.text(f"original {i}") for i in range(6)]
    with Session(engine) as session:
        made = factory.dataset(session, items=64)
        session.commit()
    errors: list[BaseException] = []

    def write(seed: int) -> None:
        # Each batch holds the write lock from building its index to its commit, so the
        # other thread's batch reads the index only after this one's documents are in.
        try:
            for original in originals:
                with Session(engine) as session:
                    factory.write_batch(session, made, [factory.near_copy(original, seed=seed)])
                    session.commit()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    with Session(engine) as session:
        statuses = session.execute(
            select(Document.status, func.count())
            .where(Document.dataset_id == made.dataset_id)
            .group_by(Document.status)
        ).all()
    assert dict(statuses) == {"accepted": 6, "duplicate": 6}


def test_a_rebuild_by_another_process_reloads_this_ones_index(engine: Engine) -> None:
    original = factory.text("original")
    with Session(engine) as session:
        made = factory.dataset(session)
        unsigned = factory.document(session, made, original, minhash=b"")  # lost signature
        factory.write_batch(session, made, [factory.text("other")])
        session.commit()
    stale = cached(engine, made)
    assert unsigned not in stale.index

    with Session(engine) as session:  # e.g. `priorforge dedup rebuild` in another process
        service.rebuild_bands(session, made.dataset_id)
        session.commit()
        key = service._cache_key(session, made.dataset_id)
    service._EMBEDDED[key] = stale  # this process still holds what it loaded before

    with Session(engine) as session:
        match = factory.write_batch(session, made, [factory.near_copy(original)])[0][1]
        session.rollback()
    assert match is not None
    assert match[0] == unsigned
    assert cached(engine, made).generation == 1
