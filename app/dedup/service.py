"""Near-duplicate decisions against a dataset's index, inside the writer's transaction.

Service mode (Postgres): the index is shared by every worker as band buckets in
``minhash_band``. Per write batch, under a per-dataset lock, one query finds every stored
document sharing a band with any candidate of the batch, one loads their signatures, and the
batch's additions are written in one statement at ``flush``.

Embedded mode (SQLite): the process keeps one in-memory index per dataset, loaded on first
use from the stored signatures (``document.minhash`` of the accepted documents) and caught up
at the start of every batch with documents other processes committed meanwhile; no band rows
are read or written. The index only ever holds committed documents: a batch's own additions
live beside it until the batch commits, and the next batch reads them back.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from app.dedup import repository
from app.dedup.lsh import INDEX_ALGORITHM, MemoryIndex, band_keys, matrix_from_bytes, to_bytes
from app.dedup.minhash import ALGORITHM, NUM_PERM, signatures
from app.quality.canary import canary_line

log = logging.getLogger(__name__)

Match = tuple[uuid.UUID, float]
# Documents handled per statement when a dataset's index is rebuilt.
_REBUILD_BATCH = 1000


class NearDuplicateIndex:
    """Check-then-add under a per-dataset lock: exactly one of two near copies is kept.

    Built per write batch, before the batch's documents are written, with the signatures
    of the batch's candidates; ``match`` and ``add`` each candidate in order, then ``flush``.
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
        self.embedded = repository.is_embedded(session)
        self.matrix = (
            np.stack([_uint32(row) for row in batch])
            if len(batch)
            else np.zeros((0, NUM_PERM), dtype=np.uint32)
        )
        self.keys = band_keys(self.matrix)
        repository.lock_dataset(session, dataset_id)
        pinned = repository.pin_algorithm(session, dataset_id, INDEX_ALGORITHM)
        if self.embedded:
            if pinned != INDEX_ALGORITHM:
                # Nothing but signatures is stored: bring them up to date (the whole index
                # is rebuilt in memory anyway).
                _upgrade(session, dataset_id, pinned)
            self.stored = _embedded_index(session, dataset_id)
        else:
            if pinned != INDEX_ALGORITHM:
                # Older bands and signatures match nothing this worker computes: rebuild
                # once, now, under the lock we hold, rather than miss every older copy.
                log.warning(
                    "dataset %s was indexed with %s; rebuilding its index as %s",
                    dataset_id, pinned, INDEX_ALGORITHM,
                )  # fmt: skip
                rebuild_bands(session, dataset_id)
            self.stored = _candidates_from_bands(session, dataset_id, self.keys)
        # Every candidate of the batch against the stored documents at once: they do not
        # change during the batch. The batch's own additions are checked one by one.
        self.stored_matches = self.stored.query_many(self.matrix, threshold)
        self.row_of = {row.tobytes(): place for place, row in enumerate(self.matrix)}
        self.added: MemoryIndex[uuid.UUID] = MemoryIndex(threshold)
        self.pending: list[uuid.UUID] = []
        self.pending_keys: list[int] = []

    def match(self, signature: NDArray[np.uint32]) -> Match | None:
        """The stored or earlier-added document this one nearly copies, if any."""
        place = self._place(signature)
        stored = self.stored_matches[place]
        added = self.added.query(signature, keys=self.keys[place])
        if added is not None and (stored is None or added[1] > stored[1]):
            return added
        return stored

    def add(self, document_id: uuid.UUID, signature: NDArray[np.uint32]) -> None:
        keys = self.added.insert(document_id, signature, self.keys[self._place(signature)])
        if not self.embedded:
            self.pending.append(document_id)
            self.pending_keys.extend(keys)

    def _place(self, signature: NDArray[np.uint32]) -> int:
        place = self.row_of.get(_uint32(signature).tobytes())
        if place is None:
            raise ValueError("a signature not announced with the batch: pass every one to __init__")
        return place

    def flush(self) -> None:
        if self.pending:
            repository.add_bands(self.session, self.dataset_id, self.pending, self.pending_keys)
        self.pending, self.pending_keys = [], []


def _candidates_from_bands(
    session: Session, dataset_id: uuid.UUID, keys: NDArray[np.int64]
) -> MemoryIndex[uuid.UUID]:
    """The stored documents sharing a band with any signature of the batch, indexed."""
    index: MemoryIndex[uuid.UUID] = MemoryIndex(threshold=1.0)
    stored = [
        (document, blob)
        for document, blob in repository.candidates(session, dataset_id, np.unique(keys).tolist())
        if _usable(blob)
    ]
    index.extend(
        [document for document, _blob in stored],
        matrix_from_bytes([blob for _document, blob in stored]),
    )
    return index


def _uint32(signature: NDArray[np.uint32]) -> NDArray[np.uint32]:
    return np.ascontiguousarray(signature, dtype=np.uint32)


def _usable(signature: bytes | None) -> bool:
    return signature is not None and len(signature) == NUM_PERM * 4


# Embedded mode: one index per (database, dataset) in this process.


@dataclass
class _Embedded:
    index: MemoryIndex[uuid.UUID] = field(default_factory=lambda: MemoryIndex(threshold=1.0))
    generation: int = 0  # the dataset's dedup_generation when loaded
    watermark: int = 0  # the highest document rowid read
    accepted: int = 0  # accepted documents read (with or without a signature)
    lock: threading.Lock = field(default_factory=threading.Lock)


_EMBEDDED: dict[tuple[str, uuid.UUID], _Embedded] = {}
_EMBEDDED_LOCK = threading.Lock()


def _cache_key(session: Session, dataset_id: uuid.UUID) -> tuple[str, uuid.UUID]:
    return session.get_bind().engine.url.render_as_string(hide_password=True), dataset_id


def _forget(session: Session, dataset_id: uuid.UUID) -> None:
    with _EMBEDDED_LOCK:
        _EMBEDDED.pop(_cache_key(session, dataset_id), None)


def _embedded_index(session: Session, dataset_id: uuid.UUID) -> MemoryIndex[uuid.UUID]:
    """This process's index of the dataset, caught up with every committed document.

    Called with the database's write lock held, so nothing is committed meanwhile.
    """
    key = _cache_key(session, dataset_id)
    with _EMBEDDED_LOCK:
        state = _EMBEDDED.setdefault(key, _Embedded())
    with state.lock:
        generation = repository.generation(session, dataset_id)
        rows = repository.accepted_since(session, dataset_id, state.watermark)
        if (
            state.accepted + len(rows) != repository.count_accepted(session, dataset_id)
            or state.generation != generation
        ):
            # A document below the watermark left or joined the accepted set, signatures
            # were rebuilt (by any process), or the file was replaced: what this process
            # holds is no longer a prefix of what is stored. Start over.
            if state.accepted:
                log.info("dataset %s: reloading the near-duplicate index", dataset_id)
            state = _Embedded(generation=generation)
            with _EMBEDDED_LOCK:
                _EMBEDDED[key] = state
            rows = repository.accepted_since(session, dataset_id, 0)
        usable = [(document, blob) for _rowid, document, blob in rows if _usable(blob)]
        state.index.extend(
            [document for document, _blob in usable],
            matrix_from_bytes([blob for _document, blob in usable if blob is not None]),
        )
        state.accepted += len(rows)
        if rows:
            state.watermark = rows[-1][0]
        return state.index


# Maintenance


def rebuild_bands(session: Session, dataset_id: uuid.UUID) -> int:
    """Recreate the dataset's near-duplicate index from its stored signatures.

    For when ``minhash_band`` was lost or damaged, or the algorithm changed: under the
    dataset lock, signatures computed by another algorithm (or missing) are recomputed from
    the accepted documents' texts and the dataset is re-pinned to ``INDEX_ALGORITHM``; then
    the dataset's band rows are deleted and written again from the signatures. Embedded
    (SQLite) databases keep no band rows: there the process's in-memory index is dropped and
    reloads on next use, and the dataset's generation is raised so that other processes
    reload theirs too. Returns the number of documents indexed. The caller commits.
    """
    repository.lock_dataset(session, dataset_id)
    pinned = repository.pin_algorithm(session, dataset_id, INDEX_ALGORITHM)
    if pinned != INDEX_ALGORITHM:
        _upgrade(session, dataset_id, pinned)
    _recompute_signatures(session, dataset_id, only_missing=True)
    repository.delete_bands(session, dataset_id)
    repository.bump_generation(session, dataset_id)
    ids = repository.accepted_ids(session, dataset_id)
    if repository.is_embedded(session):
        _forget(session, dataset_id)
        return len(repository.signatures_of(session, ids))
    indexed = 0
    for begin in range(0, len(ids), _REBUILD_BATCH):
        stored = repository.signatures_of(session, ids[begin : begin + _REBUILD_BATCH])
        found = [
            document
            for document in ids[begin : begin + _REBUILD_BATCH]
            if _usable(stored.get(document))
        ]
        if found:
            keys = band_keys(matrix_from_bytes([stored[document] for document in found]))
            repository.add_bands(session, dataset_id, found, keys.ravel().tolist())
        indexed += len(found)
    return indexed


def _upgrade(session: Session, dataset_id: uuid.UUID, pinned: str) -> None:
    """Re-pin the dataset to ``INDEX_ALGORITHM``, recomputing signatures if theirs differ."""
    if pinned != ALGORITHM and not pinned.startswith(f"{ALGORITHM}/"):
        log.warning("dataset %s: recomputing %s signatures as %s", dataset_id, pinned, ALGORITHM)
        _recompute_signatures(session, dataset_id)
    repository.set_algorithm(session, dataset_id, INDEX_ALGORITHM)
    repository.bump_generation(session, dataset_id)
    if repository.is_embedded(session):
        _forget(session, dataset_id)


def _recompute_signatures(
    session: Session, dataset_id: uuid.UUID, only_missing: bool = False
) -> None:
    """Sign the dataset's accepted documents (or those without a signature) from their texts."""
    ids = repository.accepted_ids(session, dataset_id)
    for begin in range(0, len(ids), _REBUILD_BATCH):
        chunk = ids[begin : begin + _REBUILD_BATCH]
        if only_missing:
            stored = repository.signatures_of(session, chunk)
            chunk = [document for document in chunk if not _usable(stored.get(document))]
        texts = repository.texts_of(session, chunk)
        found = [document for document in chunk if document in texts]
        rows = signatures([_signed_text(*texts[document]) for document in found]).rows
        repository.store_signatures(
            session, [(document, to_bytes(row)) for document, row in zip(found, rows, strict=True)]
        )


def _signed_text(text: str, meta: dict[str, object]) -> str:
    """The text as it was signed: the canary line is added after the signature."""
    guid = meta.get("canary")
    suffix = f"\n\n{canary_line(str(guid))}" if guid else ""
    return text[: -len(suffix)] if suffix and text.endswith(suffix) else text
