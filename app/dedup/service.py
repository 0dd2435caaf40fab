"""Near-duplicate decisions against a dataset's shared index, inside the writer's transaction."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from app.dedup import repository
from app.dedup.lsh import MemoryIndex, band_ints, from_bytes
from app.dedup.minhash import ALGORITHM

log = logging.getLogger(__name__)


class NearDuplicateIndex:
    """Check-then-add under a per-dataset lock: exactly one of two near copies is kept.

    Built per write batch: one query finds every stored document sharing a band with any
    candidate of the batch, one loads their signatures, and the batch's own additions are
    kept in memory until ``flush`` writes their buckets in one statement.
    """

    def __init__(
        self,
        session: Session,
        dataset_id: uuid.UUID,
        threshold: float,
        batch: Sequence[NDArray[np.uint32]],
    ) -> None:
        self.session = session
        self.dataset_id = dataset_id
        repository.lock_dataset(session, dataset_id)
        pinned = repository.pin_algorithm(session, dataset_id, ALGORITHM)
        if pinned != ALGORITHM:
            log.warning(
                "dataset %s was indexed with %s, this worker computes %s: near-duplicate "
                "matches against older documents may be missed",
                dataset_id, pinned, ALGORITHM,
            )  # fmt: skip
        keys = sorted({key for signature in batch for key in band_ints(signature)})
        buckets = repository.buckets(session, dataset_id, keys)
        stored = repository.signatures_of(
            session, sorted({i for ids in buckets.values() for i in ids})
        )
        self.memory: MemoryIndex[uuid.UUID] = MemoryIndex(
            threshold,
            signatures={doc: from_bytes(data) for doc, data in stored.items()},
            buckets=buckets,
        )
        self.pending: list[tuple[uuid.UUID, list[int]]] = []

    def match(self, signature: NDArray[np.uint32]) -> tuple[uuid.UUID, float] | None:
        return self.memory.query(signature)

    def add(self, document_id: uuid.UUID, signature: NDArray[np.uint32]) -> None:
        self.pending.append((document_id, self.memory.insert(document_id, signature)))

    def flush(self) -> None:
        repository.add_many(self.session, self.dataset_id, self.pending)
        self.pending = []
