"""In-memory MinHash LSH with verification on the signature. Pure.

Banding finds candidates generously: 20 bands of 4 rows (the first 80 signature positions)
make a pair at Jaccard 0.75 share a band with probability > 0.999, at 0.7 > 0.995. Each
candidate is then verified on all 128 positions by the share of equal ones, accepted at
``threshold - margin``. The margin absorbs the estimate's noise (about ±0.04 at 128
permutations), so pairs just above the threshold are not missed, while pairs well below it
stay out. (Every band is a row per document in the shared index, and writing those rows is
most of its cost: 20 bands rather than 32 keep it above 2,000 documents a second per worker
while missing under 0.5% of candidates at the threshold itself.)

The index keeps its band keys compactly: sorted numpy runs (bulk loads and batches, merged
as they grow, so lookups stay few) plus a small dict for items inserted one at a time.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

from app.dedup.minhash import ALGORITHM, NUM_PERM, estimated_jaccards

BANDS = 20
ROWS = 4
VERIFY_MARGIN = 0.05
# What a dataset's index is pinned to: the signatures and how they are banded.
INDEX_ALGORITHM = f"{ALGORITHM}/b{BANDS}x{ROWS}"
# Items inserted one at a time are kept in a dict until there are this many of their keys.
_RECENT_KEYS = 1 << 16

Key = TypeVar("Key", bound=Hashable)
Match = tuple[Key, float]


def band_keys(matrix: NDArray[np.uint32]) -> NDArray[np.int64]:
    """Band keys of every row of a signature matrix: (rows, BANDS) signed 64-bit integers."""
    banded = np.asarray(matrix, dtype=np.uint32).reshape(-1, NUM_PERM)[:, : BANDS * ROWS]
    rows = np.ascontiguousarray(banded).reshape(-1, BANDS, ROWS)
    with np.errstate(over="ignore"):
        mixed = np.zeros(rows.shape[:2], dtype=np.uint64)
        for column in range(ROWS):
            mixed *= np.uint64(0x100000001B3)
            mixed += rows[:, :, column]
        mixed *= np.uint64(0x9E3779B97F4A7C15)
        mixed += np.arange(BANDS, dtype=np.uint64)  # the band number, mixed in
    return mixed.view(np.int64)


def band_ints(signature: NDArray[np.uint32]) -> list[int]:
    """Band keys as signed 64-bit integers, for a BIGINT column (band number mixed in)."""
    keys: list[int] = band_keys(signature)[0].tolist()
    return keys


class MemoryIndex(Generic[Key]):
    """Signatures by id, and ids by band bucket; first come, first kept."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._ids: list[Key] = []
        self._position: dict[Key, int] = {}
        self._rows = np.zeros((0, NUM_PERM), dtype=np.uint32)  # grown by doubling
        # Sorted runs of (band key, position), largest first; and recent single inserts.
        self._runs: list[tuple[NDArray[np.int64], NDArray[np.int64]]] = []
        self._recent: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item: object) -> bool:
        return item in self._position

    @property
    def signatures(self) -> Mapping[Key, NDArray[np.uint32]]:
        """Every indexed item's signature (a copy; for inspection)."""
        return {item: self._rows[position] for item, position in self._position.items()}

    def ids(self) -> Iterator[Key]:
        return iter(self._ids)

    # Lookups

    def query(
        self,
        signature: NDArray[np.uint32],
        threshold: float | None = None,
        keys: NDArray[np.int64] | None = None,
    ) -> Match[Key] | None:
        """The most similar indexed item above the (margined) threshold, if any.

        ``keys``: the signature's band keys, when the caller has them already.
        """
        if not self._ids:
            return None
        found = self._candidates(band_keys(signature) if keys is None else keys.reshape(1, -1))
        return self._verify(found[0], signature, threshold)

    def query_many(
        self, matrix: NDArray[np.uint32], threshold: float | None = None
    ) -> list[Match[Key] | None]:
        """``query`` for each row, all against the index as it is (nothing is inserted)."""
        if not self._ids:
            return [None] * len(matrix)
        candidates = self._candidates(band_keys(matrix))
        return [
            self._verify(found, row, threshold)
            for found, row in zip(candidates, matrix, strict=True)
        ]

    # Insertion

    def insert(
        self,
        item: Key,
        signature: NDArray[np.uint32],
        keys: NDArray[np.int64] | None = None,
    ) -> list[int]:
        """Index the item (unless it already is); return its band keys."""
        found: list[int] = band_ints(signature) if keys is None else keys.tolist()
        if item in self._position:
            return found
        position = self._append([item], signature.reshape(1, NUM_PERM))
        for key in found:
            self._recent.setdefault(key, []).append(position)
        if len(self._recent) >= _RECENT_KEYS:
            self._seal_recent()
        return found

    def extend(self, items: Sequence[Key], matrix: NDArray[np.uint32]) -> None:
        """Index many items at once (items already indexed are skipped)."""
        fresh = [row for row, item in enumerate(items) if item not in self._position]
        if len(fresh) < len(items):
            items, matrix = [items[row] for row in fresh], matrix[fresh]
        if len(items) == 0:
            return
        first = self._append(items, matrix)
        self._add_run(band_keys(matrix), first)

    def add_unless_duplicate(self, item: Key, signature: NDArray[np.uint32]) -> Match[Key] | None:
        """Insert the item, or return what it duplicates (and leave the index unchanged)."""
        match = self.query(signature)
        if match is None:
            self.insert(item, signature)
        return match

    def add_unless_duplicates(
        self, items: Sequence[Key], matrix: NDArray[np.uint32]
    ) -> list[Match[Key] | None]:
        """``add_unless_duplicate`` for each row in order, as if one at a time, but batched.

        Rows that share no band key with the index or with an earlier row of the batch are
        new without verification; only the others are decided one by one.
        """
        count = len(items)
        keys = band_keys(matrix)
        candidates = self._candidates(keys)
        # Earlier rows of the batch sharing a band key with a later one.
        flat = keys.ravel()
        order = np.argsort(flat, kind="stable")
        ordered = flat[order]
        same = np.flatnonzero(ordered[1:] == ordered[:-1])
        earlier: dict[int, set[int]] = {}
        if same.size:
            groups: dict[int, list[int]] = {}
            for at in same.tolist():
                group = groups.setdefault(int(ordered[at]), [int(order[at]) // BANDS])
                group.append(int(order[at + 1]) // BANDS)
            for rows in groups.values():
                for place, row in enumerate(rows):
                    before = [r for r in rows[:place] if r != row]
                    if before:
                        earlier.setdefault(row, set()).update(before)
        results: list[Match[Key] | None] = [None] * count
        kept = np.ones(count, dtype=bool)
        batch_ids = list(items)
        for row in sorted(set(earlier) | {r for r in range(count) if len(candidates[r])}):
            match = self._verify(candidates[row], matrix[row], None)
            previous = sorted(r for r in earlier.get(row, ()) if kept[r])
            if previous:
                scores = estimated_jaccards(matrix[previous], matrix[row])
                best = int(np.argmax(scores))  # the first of equals: the earliest row
                score = float(scores[best])
                if score >= self.threshold - VERIFY_MARGIN and (match is None or score > match[1]):
                    match = (batch_ids[previous[best]], score)
            if match is not None:
                results[row] = match
                kept[row] = False
        accepted = np.flatnonzero(kept)
        if accepted.size:
            first = self._append([batch_ids[r] for r in accepted.tolist()], matrix[accepted])
            self._add_run(keys[accepted], first)
        return results

    # Internals

    def _append(self, items: Sequence[Key], matrix: NDArray[np.uint32]) -> int:
        first = len(self._ids)
        needed = first + len(items)
        if needed > self._rows.shape[0]:
            grown = np.zeros((max(needed, 2 * self._rows.shape[0], 64), NUM_PERM), np.uint32)
            grown[:first] = self._rows[:first]
            self._rows = grown
        self._rows[first:needed] = matrix
        for offset, item in enumerate(items):
            self._position[item] = first + offset
        self._ids.extend(items)
        return first

    def _add_run(self, keys: NDArray[np.int64], first: int) -> None:
        """Add the band keys of rows first, first+1, ... as one sorted run."""
        positions = np.repeat(np.arange(first, first + keys.shape[0], dtype=np.int64), BANDS)
        flat = keys.ravel()
        order = np.argsort(flat, kind="stable")
        self._push_run(flat[order], positions[order])

    def _push_run(self, keys: NDArray[np.int64], positions: NDArray[np.int64]) -> None:
        self._runs.append((keys, positions))
        self._runs.sort(key=lambda run: -run[0].size)  # stable: equal sizes keep their order
        # Size-tiered: merge while the newer run is at least half the size of the older
        # one, so there are O(log n) runs and each key is copied O(log n) times.
        while len(self._runs) > 1 and 2 * self._runs[-1][0].size >= self._runs[-2][0].size:
            (older_keys, older_positions), (newer_keys, newer_positions) = self._runs[-2:]
            merged_keys = np.concatenate((older_keys, newer_keys))
            merged_positions = np.concatenate((older_positions, newer_positions))
            order = np.argsort(merged_keys, kind="stable")  # two sorted runs: a linear merge
            self._runs[-2:] = [(merged_keys[order], merged_positions[order])]

    def _seal_recent(self) -> None:
        keys = np.fromiter(
            (key for key, positions in self._recent.items() for _ in positions), np.int64
        )
        positions = np.fromiter(
            (p for found in self._recent.values() for p in found), np.int64, count=keys.size
        )
        self._recent = {}
        order = np.argsort(keys, kind="stable")
        self._push_run(keys[order], positions[order])

    def _candidates(self, keys: NDArray[np.int64]) -> list[NDArray[np.int64]]:
        """For each row of band keys: the positions of indexed items sharing a key with it."""
        count = keys.shape[0]
        flat = keys.ravel()
        hits: list[NDArray[np.int64]] = []  # positions, paired with ...
        owners: list[NDArray[np.int64]] = []  # ... the rows they are candidates for
        for run_keys, run_positions in self._runs:
            low = np.searchsorted(run_keys, flat, side="left")
            high = np.searchsorted(run_keys, flat, side="right")
            found = np.flatnonzero(high > low)
            if found.size == 0:
                continue
            spans = (high - low)[found]
            owners.append(np.repeat(found // BANDS, spans))
            # Positions low..high-1 of each found key, concatenated.
            starts = np.repeat(low[found] - np.cumsum(spans) + spans, spans)
            hits.append(run_positions[starts + np.arange(int(spans.sum()))])
        if self._recent:
            recent = self._recent
            for index, key in enumerate(flat.tolist()):
                found_positions = recent.get(key)
                if found_positions is not None:
                    owners.append(np.full(len(found_positions), index // BANDS, np.int64))
                    hits.append(np.asarray(found_positions, dtype=np.int64))
        empty = np.zeros(0, dtype=np.int64)
        result = [empty] * count
        if hits:
            # Unique (row, position) pairs, sorted by row then position, split by row.
            pairs = np.unique((np.concatenate(owners) << 32) | np.concatenate(hits))
            rows = pairs >> 32
            firsts = np.concatenate(([0], np.flatnonzero(np.diff(rows)) + 1))
            positions = pairs & 0xFFFFFFFF
            for row, group in zip(
                rows[firsts].tolist(), np.split(positions, firsts[1:]), strict=True
            ):
                result[row] = group
        return result

    def _verify(
        self,
        positions: NDArray[np.int64],
        signature: NDArray[np.uint32],
        threshold: float | None,
    ) -> Match[Key] | None:
        if positions.size == 0:
            return None
        scores = estimated_jaccards(self._rows[positions], signature)
        best = int(np.argmax(scores))  # positions are sorted: the earliest of equals
        score = float(scores[best])
        if score < (self.threshold if threshold is None else threshold) - VERIFY_MARGIN:
            return None
        return self._ids[int(positions[best])], score


def to_bytes(signature: NDArray[np.uint32]) -> bytes:
    return signature.astype("<u4").tobytes()


def from_bytes(data: bytes) -> NDArray[np.uint32]:
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def matrix_from_bytes(blobs: Sequence[bytes]) -> NDArray[np.uint32]:
    """Stored signatures as one (n, NUM_PERM) matrix."""
    if not blobs:
        return np.zeros((0, NUM_PERM), dtype=np.uint32)
    return np.frombuffer(b"".join(blobs), dtype="<u4").astype(np.uint32).reshape(-1, NUM_PERM)
