"""The near-duplicate index's edges, on an embedded (SQLite) database: what each query reads,
which document a candidate is matched to, and what an algorithm change rewrites."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from numpy.typing import NDArray
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from app.dedup import repository, service
from app.dedup.lsh import INDEX_ALGORITHM, to_bytes
from app.dedup.minhash import ALGORITHM, signatures
from app.models import Dataset, Document
from tests.dedup import factory

BASE = np.random.default_rng(5).integers(0, 2**32, size=128, dtype=np.uint32)


def changed(signature: NDArray[np.uint32], positions: range) -> NDArray[np.uint32]:
    """New values at ``positions`` (from 4 on: the first band stays shared)."""
    copy = signature.copy()
    copy[list(positions)] += np.uint32(7_777_777)
    return copy


def test_every_query_reads_one_dataset_and_only_its_accepted_documents(engine: Engine) -> None:
    with Session(engine) as session:
        mine, other = factory.dataset(session), factory.dataset(session)
        kept = [factory.document(session, mine, factory.text(f"kept {i}")) for i in range(2)]
        factory.document(session, mine, factory.text("dup"), status="duplicate")
        factory.document(session, other, factory.text("elsewhere"))
        session.commit()
        assert repository.count_accepted(session, mine.dataset_id) == 2
        assert repository.accepted_ids(session, mine.dataset_id) == kept
        since = repository.accepted_since(session, mine.dataset_id, 0)
        assert [document for _rowid, document, _blob in since] == kept
        assert repository.accepted_since(session, mine.dataset_id, since[0][0])[0][1] == kept[1]
        assert set(repository.signatures_of(session, kept[:1])) == {kept[0]}


def test_pinning_one_datasets_algorithm_leaves_the_others_alone(engine: Engine) -> None:
    with Session(engine) as session:
        mine, other = factory.dataset(session), factory.dataset(session)
        assert repository.pin_algorithm(session, mine.dataset_id, "algo-a") == "algo-a"
        assert repository.pin_algorithm(session, mine.dataset_id, "algo-b") == "algo-a"
        pinned = session.scalar(
            select(Dataset.dedup_algorithm).where(Dataset.id == other.dataset_id)
        )
        assert pinned is None


def test_a_candidate_is_matched_to_the_closer_of_a_stored_and_an_added_document(
    engine: Engine,
) -> None:
    apart = changed(BASE, range(4, 40))  # 92/128 of BASE: below 0.8 - 0.05
    nearer_added = changed(BASE, range(12, 40))  # 100/128 of BASE, 120/128 of apart
    nearer_stored = changed(BASE, range(4, 16))  # 116/128 of BASE, 104/128 of apart
    with Session(engine) as session:
        made = factory.dataset(session)
        stored = factory.document(session, made, "stored", minhash=to_bytes(BASE))
        session.commit()
        near = service.NearDuplicateIndex(
            session, made.dataset_id, 0.8, [apart, nearer_added, nearer_stored]
        )
        added = factory.document(session, made, "apart", minhash=to_bytes(apart))
        assert near.match(apart) is None
        near.add(added, apart)
        assert near.match(nearer_added) == (added, 120 / 128)
        assert near.match(nearer_stored) == (stored, 116 / 128)
        with pytest.raises(ValueError, match="^a signature not announced with the batch"):
            near.match(changed(BASE, range(50, 60)))


def test_a_new_banding_keeps_the_signatures_and_makes_other_processes_reload(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    other_text = factory.text("another text")
    with Session(engine) as session:
        made = factory.dataset(session)
        # A usable signature, though not this text's: only a new signature algorithm would
        # recompute it, and the banding alone changed.
        first = factory.document(
            session, made, factory.text("first"), minhash=to_bytes(signatures([other_text]).rows[0])
        )
        session.execute(
            update(Dataset)
            .where(Dataset.id == made.dataset_id)
            .values(dedup_algorithm=f"{ALGORITHM}/b16x8")
        )
        session.commit()
        before = repository.generation(session, made.dataset_id)
    with Session(engine) as session, caplog.at_level(logging.INFO, "app.dedup.service"):
        service.NearDuplicateIndex(session, made.dataset_id, 0.7, [])
        session.commit()
        assert repository.generation(session, made.dataset_id) == before + 1
        stored = session.scalar(select(Document.minhash).where(Document.id == first))
        assert stored == to_bytes(signatures([other_text]).rows[0])
        pinned = session.scalar(
            select(Dataset.dedup_algorithm).where(Dataset.id == made.dataset_id)
        )
        assert pinned == INDEX_ALGORITHM
    assert "recomputing" not in caplog.text


def test_a_rebuild_signs_documents_without_a_usable_signature_as_the_pipeline_does(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "_REBUILD_BATCH", 2)
    bodies = [factory.text(f"unsigned {i}") for i in range(5)]
    with Session(engine) as session:
        made = factory.dataset(session)
        ids = [factory.document(session, made, body, minhash=b"") for body in bodies]
        session.commit()
        assert service.rebuild_bands(session, made.dataset_id) == 5
        session.commit()
        stored = repository.signatures_of(session, ids)
    assert [stored[i] for i in ids] == [to_bytes(row) for row in signatures(bodies).rows]


def test_a_reload_of_the_process_index_is_logged(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with Session(engine) as session:
        made = factory.dataset(session)
        gone = factory.document(session, made, factory.text("soon rejected"))
        session.commit()
        factory.write_batch(session, made, [factory.text("one")])
        session.commit()
        session.execute(update(Document).where(Document.id == gone).values(status="rejected"))
        session.commit()
    with Session(engine) as session, caplog.at_level(logging.INFO, "app.dedup.service"):
        factory.write_batch(session, made, [factory.text("two")])
        session.commit()
    assert f"dataset {made.dataset_id}: reloading the near-duplicate index" in caplog.messages


def test_of_an_equally_close_stored_and_added_document_the_stored_one_wins(
    engine: Engine,
) -> None:
    apart = changed(BASE, range(4, 40))  # 92/128 of BASE: new
    even = changed(BASE, range(4, 22))  # 110/128 of BASE and of apart
    with Session(engine) as session:
        made = factory.dataset(session)
        stored = factory.document(session, made, "stored", minhash=to_bytes(BASE))
        session.commit()
        near = service.NearDuplicateIndex(session, made.dataset_id, 0.8, [apart, even])
        near.add(factory.document(session, made, "apart", minhash=to_bytes(apart)), apart)
        assert near.match(even) == (stored, 110 / 128)
