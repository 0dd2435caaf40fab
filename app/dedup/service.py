"""Near-duplicate decisions against a dataset's shared index, inside the writer's transaction."""

from __future__ import annotations

import logging
import uuid

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from app.dedup import repository
from app.dedup.lsh import VERIFY_MARGIN, band_ints, from_bytes, similarity, to_bytes
from app.dedup.minhash import ALGORITHM

log = logging.getLogger(__name__)


class NearDuplicateIndex:
    """Check-then-add under a per-dataset lock: exactly one of two near copies is kept."""

    def __init__(self, session: Session, dataset_id: uuid.UUID, threshold: float) -> None:
        self.session = session
        self.dataset_id = dataset_id
        self.threshold = threshold
        repository.lock_dataset(session, dataset_id)
        pinned = repository.pin_algorithm(session, dataset_id, ALGORITHM)
        if pinned != ALGORITHM:
            log.warning(
                "dataset %s was indexed with %s, this worker computes %s: near-duplicate "
                "matches against older documents may be missed",
                dataset_id,
                pinned,
                ALGORITHM,
            )

    def match(self, signature: NDArray[np.uint32]) -> tuple[uuid.UUID, float] | None:
        keys = band_ints(signature)
        found = repository.candidates(self.session, self.dataset_id, keys)
        if not found:
            return None
        best: tuple[uuid.UUID, float] | None = None
        for document_id, stored in repository.signatures_of(self.session, list(found)).items():
            score = similarity(signature, from_bytes(stored))
            if score >= self.threshold - VERIFY_MARGIN and (best is None or score > best[1]):
                best = (document_id, score)
        return best

    def add(self, document_id: uuid.UUID, signature: NDArray[np.uint32]) -> None:
        repository.store_signature(self.session, document_id, to_bytes(signature))
        repository.add(self.session, self.dataset_id, document_id, band_ints(signature))
