"""MinHash signatures at speed: numpy shingle hashing fed to rensa's matrix API. Pure.

Text is normalised (NFKC, case-folded, runs of non-alphanumerics to one space) and split into
words; each word gets a 64-bit polynomial hash computed for all words at once with wrapping
uint64 arithmetic (prefix sums of c[j]·B⁻ʲ make every word's hash independent of where it
stands), word 5-grams are mixed into shingle hashes, and rensa turns the flat shingle buffer
into a signature matrix in one call. Everything is seeded and versioned: the same text gives
the same signature in every process and on every machine running the same ``ALGORITHM``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from rensa import RMinHash

SHINGLE_WORDS = 5
NUM_PERM = 128
SEED = 20261122
ALGORITHM = f"pf-minhash-1/rensa-{RMinHash.ALGORITHM_VERSION}/w{SHINGLE_WORDS}/p{NUM_PERM}/s{SEED}"

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
_BASE = np.uint64(0x100000001B3)  # odd, so invertible modulo 2**64
_BASE_INV = np.uint64(pow(0x100000001B3, -1, 2**64))
_MIX = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
     0xFF51AFD7ED558CCD],
    dtype=np.uint64,
)  # fmt: skip
_POWERS: dict[bool, NDArray[np.uint64]] = {}


# ASCII fast path: every byte that is not a letter or digit becomes a space, in C.
_ASCII_TABLE = bytes(
    b if (48 <= b <= 57 or 97 <= b <= 122) else (b + 32 if 65 <= b <= 90 else 32)
    for b in range(256)
)


def normalise(text: str) -> bytes:
    """Case-folded words separated by spaces (runs of spaces may remain; they split nothing)."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_TABLE)
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).encode("utf-8")


def _powers(length: int, inverse: bool) -> NDArray[np.uint64]:
    cached = _POWERS.get(inverse)
    if cached is None or len(cached) < length:
        size = max(length, 2 * len(cached) if cached is not None else 1 << 16)
        factors = np.full(size, _BASE_INV if inverse else _BASE, dtype=np.uint64)
        factors[0] = 1
        with np.errstate(over="ignore"):
            cached = np.cumprod(factors, dtype=np.uint64)
        _POWERS[inverse] = cached
    return cached[:length]


def _finalise(values: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """splitmix64's finaliser: spreads every input bit over the output."""
    with np.errstate(over="ignore"):
        values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return values ^ (values >> np.uint64(31))


def word_hashes(normalised: bytes) -> NDArray[np.uint64]:
    """One 64-bit hash per space-separated word, computed for all words at once."""
    data = np.frombuffer(normalised, dtype=np.uint8)
    if data.size == 0:
        return np.zeros(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        weighted = data.astype(np.uint64) * _powers(data.size, inverse=True)
        prefix = np.concatenate(([np.uint64(0)], np.cumsum(weighted, dtype=np.uint64)))
        spaces = np.flatnonzero(data == 32)
        starts = np.concatenate(([0], spaces + 1))
        ends = np.concatenate((spaces, [data.size]))
        words = ends > starts  # runs of spaces leave empty "words" between them
        starts, ends = starts[words], ends[words]
        raw = (prefix[ends] - prefix[starts]) * _powers(data.size, inverse=False)[starts]
        return _finalise(raw + (ends - starts).astype(np.uint64))


def shingle_hashes(normalised: bytes) -> NDArray[np.uint64]:
    words = word_hashes(normalised)
    if words.size == 0:
        return words
    if words.size < SHINGLE_WORDS:
        return _finalise(np.array([np.bitwise_xor.reduce(words)], dtype=np.uint64))
    # Each shingle is already well mixed: its words' hashes are, and odd multipliers keep
    # the sum a bijection of each word's hash.
    count = words.size - SHINGLE_WORDS + 1
    with np.errstate(over="ignore"):
        mixed = np.zeros(count, dtype=np.uint64)
        for offset in range(SHINGLE_WORDS):
            mixed += words[offset : offset + count] * _MIX[offset]
        return mixed


@dataclass(frozen=True)
class Signatures:
    """One row of ``NUM_PERM`` uint32 minima per text."""

    rows: NDArray[np.uint32]
    algorithm: str = ALGORITHM


def signatures(texts: Sequence[str]) -> Signatures:
    parts = [shingle_hashes(normalise(text)) for text in texts]
    offsets = np.zeros(len(parts) + 1, dtype=np.uint64)
    offsets[1:] = np.cumsum([part.size for part in parts])
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    if len(parts) == 0:
        return Signatures(np.zeros((0, NUM_PERM), dtype=np.uint32))
    matrix = RMinHash.digest_matrix_from_flat_token_hashes(flat, offsets, NUM_PERM, SEED)
    return Signatures(np.asarray(matrix.to_rows(), dtype=np.uint32))


def estimated_jaccard(a: NDArray[np.uint32], b: NDArray[np.uint32]) -> float:
    return float(np.mean(a == b))
