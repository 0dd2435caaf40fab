"""MinHash signatures at speed: numpy shingle hashing fed to rensa's matrix API. Pure.

Text is normalised (NFKC, case-folded, runs of non-alphanumerics to one space) and split into
words. A batch of documents is hashed with one set of numpy operations: the normalised texts
are joined with spaces, each word's bytes are read as little-endian 64-bit windows straight
out of the joined buffer (the first window masked to the word's length, further windows for
longer words), the windows are combined with odd multipliers and finalised, and word 5-grams
are mixed into shingle hashes. A word's hash depends on its bytes alone and no 5-gram spans
two documents, so a document's signature is the same however the documents are batched. rensa
turns the flat shingle buffer into a signature matrix in one call. Everything is seeded and
versioned: the same text gives the same signature in every process and on every machine
running the same ``ALGORITHM``.
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray
from rensa import RMinHash

SHINGLE_WORDS = 5
NUM_PERM = 128
SEED = 20261122
ALGORITHM = f"pf-minhash-2/rensa-{RMinHash.ALGORITHM_VERSION}/w{SHINGLE_WORDS}/p{NUM_PERM}/s{SEED}"

# Batches are hashed in pieces of about this many normalised bytes: large enough to spread
# numpy's per-call cost thin, small enough for the working arrays to stay in cache.
# (Measured on 9 KB documents: 32 KB pieces run at half the speed of 128 KB to 1 MB ones.)
_PIECE_BYTES = 1 << 18
# Scratch arrays larger than this are not kept between pieces.
_SCRATCH_LIMIT = 1 << 22
# Words longer than this (hex blobs, base64, runs of digits) are hashed one by one.
_LONG_WORD = 64

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
_MIX = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
     0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x87C37B91114253D5, 0x4CF5AD432745937F],
    dtype=np.uint64,
)  # fmt: skip
_WINDOWS = _LONG_WORD // 8
_LOW_BYTES = np.array([(1 << (8 * n)) - 1 for n in range(9)], dtype=np.uint64)
_SPACE = 32
_PADDING = bytes(8)  # so that an 8-byte window starting in the last word stays in the buffer


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


class _Scratch(threading.local):
    """Working arrays reused from piece to piece, one set per thread.

    Fresh temporaries of a few hundred kilobytes per numpy step would often be fresh pages
    from the kernel (glibc hands large freed blocks back), which costs more than the
    arithmetic done in them.
    """

    def __init__(self) -> None:
        self.arrays: dict[tuple[str, str], NDArray[Any]] = {}

    def take(self, name: str, size: int, dtype: DTypeLike) -> NDArray[Any]:
        key = (name, np.dtype(dtype).str)
        array = self.arrays.get(key)
        if array is None or array.size < size:
            if size > _SCRATCH_LIMIT:
                return np.empty(size, dtype=dtype)  # an outsized piece: not kept
            array = np.empty(max(size, 1 << 12), dtype=dtype)
            self.arrays[key] = array
        return array[:size]


_scratch = _Scratch()


def _finalise(values: NDArray[np.uint64], scratch: NDArray[np.uint64]) -> None:
    """splitmix64's finaliser, in place: spreads every input bit over the output."""
    for shift, multiplier in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, 0)):
        np.right_shift(values, np.uint64(shift), out=scratch)
        np.bitwise_xor(values, scratch, out=values)
        if multiplier:
            np.multiply(values, np.uint64(multiplier), out=values)


def _long_word_hash(word: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(word, digest_size=8).digest(), "little")


def _hash_words(buffer: bytes) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
    """Hashes and start offsets of the space-separated words of ``buffer``.

    ``buffer`` starts with a space and ends with a space followed by ``_PADDING``.
    """
    size = len(buffer) - len(_PADDING)
    data = np.frombuffer(buffer, dtype=np.uint8, count=size)
    # Where a space meets a word byte: the edges alternate, a word's start then its end.
    in_word = np.not_equal(data, _SPACE, out=_scratch.take("in_word", size, np.bool_))
    edge = np.not_equal(in_word[1:], in_word[:-1], out=_scratch.take("edge", size - 1, np.bool_))
    edges = np.flatnonzero(edge)
    edges += 1
    starts = edges[0::2]
    count = starts.size
    if count == 0:
        return np.zeros(0, dtype=np.uint64), starts
    lengths = np.subtract(edges[1::2], starts, out=_scratch.take("lengths", count, np.int64))
    temporary = _scratch.take("words", count, np.uint64)
    # Every byte offset seen as the start of an unaligned little-endian 64-bit window.
    windows = np.ndarray((size,), dtype="<u8", buffer=buffer, strides=(1,))
    hashes = windows[starts]
    hashes &= _LOW_BYTES[np.minimum(lengths, 8, out=temporary.view(np.int64))]
    hashes *= _MIX[0]
    # Longer words add full windows at 8, 16, ... bytes, the last one ending at the word's
    # end; each window's multiplier depends on its place in the word.
    longer = np.flatnonzero(lengths > 8)
    first = starts[longer]
    last = first + lengths[longer] - 8  # where the word's last window starts
    for window in range(1, _WINDOWS):
        if longer.size == 0:
            break
        at = np.minimum(first + 8 * window, last)
        hashes[longer] += windows[at] * _MIX[window]
        more = last > first + 8 * window
        longer, first, last = longer[more], first[more], last[more]
    hashes += lengths.view(np.uint64)  # (int64 + uint64 would go through float64)
    _finalise(hashes, temporary)
    if longer.size:
        for index in np.flatnonzero(lengths > _LONG_WORD).tolist():
            start = int(starts[index])
            hashes[index] = _long_word_hash(buffer[start : start + int(lengths[index])])
    return hashes, starts


def word_hashes(normalised: bytes) -> NDArray[np.uint64]:
    """One 64-bit hash per space-separated word; a word's hash depends on its bytes only."""
    hashes, _starts = _hash_words(b" ".join([b"", normalised, _PADDING]))
    return hashes


def batch_word_hashes(
    normalised: Sequence[bytes],
) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
    """Word hashes of many documents at once: the flat hashes and each document's offsets."""
    count = len(normalised)
    # One allocation: " t0 t1 ... tn " and the padding.
    buffer = b" ".join([b"", *normalised, _PADDING])
    hashes, starts = _hash_words(buffer)
    # Document d occupies bytes [begin_d, begin_d + len_d) of the joined buffer.
    begins = np.zeros(count + 1, dtype=np.int64)
    begins[1:] = np.cumsum([len(text) + 1 for text in normalised])
    begins += 1
    return hashes, np.searchsorted(starts, begins).astype(np.int64)


def _shingles(
    words: NDArray[np.uint64], offsets: NDArray[np.int64]
) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
    """Word 5-gram hashes of each document, flat, and each document's offsets into them.

    A document with fewer than five words is one shingle of all its words; one with none has
    no shingles. The flat hashes may live in this thread's scratch space: use them at once.
    """
    counts = np.diff(offsets)
    total = max(words.size - SHINGLE_WORDS + 1, 0)
    # Each shingle is already well mixed: its words' hashes are, and odd multipliers keep
    # the sum a bijection of each word's hash.
    mixed = np.multiply(words[:total], _MIX[0], out=_scratch.take("mixed", total, np.uint64))
    product = _scratch.take("product", total, np.uint64)
    for place in range(1, SHINGLE_WORDS):
        np.multiply(words[place : place + total], _MIX[place], out=product)
        mixed += product
    # A 5-gram starting in the last four words of a document would span into the next one.
    keep = _scratch.take("keep", total, np.bool_)
    keep.fill(True)
    tails = (offsets[1:, None] - np.arange(1, SHINGLE_WORDS, dtype=np.int64)).ravel()
    keep[tails[(tails >= 0) & (tails < total)]] = False
    flat = np.compress(
        keep, mixed, out=_scratch.take("flat", int(np.count_nonzero(keep)), np.uint64)
    )
    short = np.flatnonzero((counts > 0) & (counts < SHINGLE_WORDS))
    shingle_counts = np.where(counts >= SHINGLE_WORDS, counts - SHINGLE_WORDS + 1, 0)
    if short.size:
        tokens = np.zeros(short.size, dtype=np.uint64)
        for row, document in enumerate(short.tolist()):
            begin, end = int(offsets[document]), int(offsets[document + 1])
            tokens[row] = np.sum(words[begin:end] * _MIX[: end - begin], dtype=np.uint64)
        tokens += counts[short].astype(np.uint64)
        _finalise(tokens, np.empty_like(tokens))
        before = np.concatenate(([0], np.cumsum(shingle_counts)))[short]
        flat = np.insert(flat, before, tokens)
        shingle_counts[short] = 1
    shingle_offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(shingle_counts, out=shingle_offsets[1:])
    return flat, shingle_offsets


def shingle_hashes(normalised: bytes) -> NDArray[np.uint64]:
    words = word_hashes(normalised)
    flat, _offsets = _shingles(words, np.array([0, words.size], dtype=np.int64))
    return flat.copy()


@dataclass(frozen=True)
class Signatures:
    """One row of ``NUM_PERM`` uint32 minima per text."""

    rows: NDArray[np.uint32]
    algorithm: str = ALGORITHM


def _pieces(normalised: Sequence[bytes]) -> list[Sequence[bytes]]:
    pieces: list[Sequence[bytes]] = []
    begin, size = 0, 0
    for end, text in enumerate(normalised):
        if size and size + len(text) > _PIECE_BYTES:
            pieces.append(normalised[begin:end])
            begin, size = end, 0
        size += len(text)
    if begin < len(normalised):
        pieces.append(normalised[begin:])
    return pieces


def _digest(normalised: Sequence[bytes]) -> NDArray[np.uint32]:
    words, offsets = batch_word_hashes(normalised)
    flat, shingle_offsets = _shingles(words, offsets)
    matrix = RMinHash.digest_matrix_from_flat_token_hashes(
        flat, shingle_offsets.astype(np.uint64), NUM_PERM, SEED
    )
    return np.fromiter(
        chain.from_iterable(matrix.to_rows()), dtype=np.uint32, count=len(normalised) * NUM_PERM
    ).reshape(len(normalised), NUM_PERM)


def signatures(texts: Sequence[str]) -> Signatures:
    """Signatures of many texts; each row is the same as for that text on its own."""
    normalised = [normalise(text) for text in texts]
    if not normalised:
        return Signatures(np.zeros((0, NUM_PERM), dtype=np.uint32))
    parts = [_digest(piece) for piece in _pieces(normalised)]
    return Signatures(parts[0] if len(parts) == 1 else np.concatenate(parts))


def estimated_jaccard(a: NDArray[np.uint32], b: NDArray[np.uint32]) -> float:
    return float(np.mean(a == b))


def estimated_jaccards(
    rows: NDArray[np.uint32], signature: NDArray[np.uint32]
) -> NDArray[np.float64]:
    """``estimated_jaccard`` of each row of a matrix against one signature."""
    return np.asarray(np.count_nonzero(rows == signature, axis=1) / rows.shape[1], dtype=np.float64)
