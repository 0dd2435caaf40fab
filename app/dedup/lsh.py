"""In-memory MinHash LSH with verification on the signature. Pure.

Banding finds candidates generously (32 bands of 4 rows: a pair at Jaccard 0.75 shares a band
with probability > 0.99); each candidate is then verified by the share of equal signature
positions, accepted at ``threshold - margin``. The margin absorbs the estimate's noise
(about ±0.04 at 128 permutations), so pairs just above the threshold are not missed, while
pairs well below it stay out.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

from app.dedup.minhash import estimated_jaccard

BANDS = 32
ROWS = 4
VERIFY_MARGIN = 0.05

Key = TypeVar("Key", bound=Hashable)


def band_ints(signature: NDArray[np.uint32]) -> list[int]:
    """Band keys as signed 64-bit integers, for a BIGINT column (band number mixed in)."""
    rows = signature.reshape(BANDS, ROWS).astype(np.uint64)
    with np.errstate(over="ignore"):
        mixed = np.zeros(BANDS, dtype=np.uint64)
        for column in range(ROWS):
            mixed = (mixed * np.uint64(0x100000001B3) + rows[:, column]).astype(np.uint64)
        mixed = (mixed * np.uint64(0x9E3779B97F4A7C15) + np.arange(BANDS, dtype=np.uint64)).astype(
            np.uint64
        )
    return [int(v) for v in mixed.view(np.int64)]


@dataclass
class MemoryIndex(Generic[Key]):
    """Signatures by id, and ids by band bucket; first come, first kept."""

    threshold: float
    signatures: dict[Key, NDArray[np.uint32]] = field(default_factory=dict)
    buckets: dict[int, list[Key]] = field(default_factory=dict)

    def query(self, signature: NDArray[np.uint32]) -> tuple[Key, float] | None:
        """The most similar indexed item above the (margined) threshold, if any."""
        best: tuple[Key, float] | None = None
        seen: set[Key] = set()
        for key in band_ints(signature):
            for candidate in self.buckets.get(key, ()):
                if candidate in seen or candidate not in self.signatures:
                    continue
                seen.add(candidate)
                score = estimated_jaccard(self.signatures[candidate], signature)
                if score >= self.threshold - VERIFY_MARGIN and (best is None or score > best[1]):
                    best = (candidate, score)
        return best

    def insert(self, item: Key, signature: NDArray[np.uint32]) -> list[int]:
        """Index the item; return its band keys."""
        keys = band_ints(signature)
        self.signatures[item] = signature
        for key in keys:
            self.buckets.setdefault(key, []).append(item)
        return keys

    def add_unless_duplicate(
        self, item: Key, signature: NDArray[np.uint32]
    ) -> tuple[Key, float] | None:
        """Insert the item, or return what it duplicates (and leave the index unchanged)."""
        match = self.query(signature)
        if match is None:
            self.insert(item, signature)
        return match


def to_bytes(signature: NDArray[np.uint32]) -> bytes:
    return signature.astype("<u4").tobytes()


def from_bytes(data: bytes) -> NDArray[np.uint32]:
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)
