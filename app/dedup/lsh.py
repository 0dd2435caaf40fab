"""In-memory MinHash LSH with verification on the signature. Pure.

Banding finds candidates generously (32 bands of 4 rows: a pair at Jaccard 0.75 shares a band
with probability > 0.99); each candidate is then verified by the share of equal signature
positions, accepted at ``threshold - margin``. The margin absorbs the estimate's noise
(about ±0.04 at 128 permutations), so pairs just above the threshold are not missed, while
pairs well below it stay out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

BANDS = 32
ROWS = 4
VERIFY_MARGIN = 0.05


def band_keys(signature: NDArray[np.uint32]) -> list[bytes]:
    rows = signature.reshape(BANDS, ROWS)
    return [bytes([band]) + rows[band].tobytes() for band in range(BANDS)]


@dataclass
class MemoryIndex:
    """Signatures by id, and ids by band bucket; first come, first kept."""

    threshold: float
    signatures: dict[str, NDArray[np.uint32]] = field(default_factory=dict)
    buckets: dict[bytes, list[str]] = field(default_factory=dict)

    def query(self, signature: NDArray[np.uint32]) -> tuple[str, float] | None:
        """The most similar indexed item above the (margined) threshold, if any."""
        best: tuple[str, float] | None = None
        seen: set[str] = set()
        for key in band_keys(signature):
            for candidate in self.buckets.get(key, ()):
                if candidate in seen:
                    continue
                seen.add(candidate)
                similarity = float(np.mean(self.signatures[candidate] == signature))
                if similarity >= self.threshold - VERIFY_MARGIN and (
                    best is None or similarity > best[1]
                ):
                    best = (candidate, similarity)
        return best

    def insert(self, item: str, signature: NDArray[np.uint32]) -> None:
        self.signatures[item] = signature
        for key in band_keys(signature):
            self.buckets.setdefault(key, []).append(item)

    def add_unless_duplicate(
        self, item: str, signature: NDArray[np.uint32]
    ) -> tuple[str, float] | None:
        """Insert the item, or return what it duplicates (and leave the index unchanged)."""
        match = self.query(signature)
        if match is None:
            self.insert(item, signature)
        return match
