"""Decontamination: word n-gram overlap with evaluation items, through an index. Pure.

Every evaluation item (a held-out scenario's text, a line of a registered evaluation set) is
cut into word n-grams (13 by default, the GPT-3 rule) on the same normalised words the dedup
uses, and each n-gram hash is kept in one sorted array with the item it came from. A
document is checked by hashing its own n-grams and looking them all up at once with a binary
search, so the cost grows with the document, not with the number of items: 100k items cost
memory (about 14 bytes per n-gram) and a build, never a scan per document.

An item's *overlap* with a document is the share of the item's distinct n-grams that occur
in the document; a document is contaminated when some item's overlap exceeds the threshold
(0 by default: one shared 13-gram is enough). Items shorter than ``n`` words count as one
n-gram of their own length, down to ``MIN_WORDS``; shorter ones are too generic to check.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from app.dedup.minhash import batch_word_hashes, normalise

DEFAULT_NGRAM = 13
MIN_WORDS = 8
MAX_NGRAM = 50
BUILD_BATCH = 20_000


def _multipliers(count: int) -> NDArray[np.uint64]:
    """Odd 64-bit constants from splitmix64's sequence: one per position in an n-gram."""
    values = []
    state = 0x5EED_DEC0_17A1_1A7E
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) % 2**64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
        values.append((z ^ (z >> 31)) | 1)
    return np.array(values, dtype=np.uint64)


_MULTIPLIERS = _multipliers(MAX_NGRAM)


def ngram_hashes(words: NDArray[np.uint64], n: int) -> NDArray[np.uint64]:
    """One hash per window of ``n`` consecutive word hashes (none if there are fewer words)."""
    count = words.size - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    mixed = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(n):
            mixed += words[offset : offset + count] * _MULTIPLIERS[offset]
    return mixed


def ngrams_within(
    words: NDArray[np.uint64], offsets: NDArray[np.int64], n: int
) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
    """The ``n``-gram hashes of several texts' words laid end to end (text ``t`` holds words
    ``offsets[t]`` to ``offsets[t + 1]``), with the text of each: windows that reach past
    their text's last word are dropped, so no n-gram spans two texts."""
    grams = ngram_hashes(words, n)
    text_of = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))  # each word's text
    inside = text_of[: grams.size] == text_of[n - 1 :]
    return grams[inside], text_of[: grams.size][inside]


def ngram_hashes_of_rows(rows: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """The hash of each row of word hashes as one n-gram (n = the row length)."""
    with np.errstate(over="ignore"):
        mixed: NDArray[np.uint64] = (rows * _MULTIPLIERS[: rows.shape[1]]).sum(
            axis=1, dtype=np.uint64
        )
    return mixed


@dataclass(frozen=True)
class Contamination:
    """The evaluation item a document leaks most, and how much of it."""

    item: str
    overlap: float
    matched: int
    ngrams: int


class ContaminationIndex:
    """Build once from ``(key, text)`` items; ``match`` documents against all of them."""

    def __init__(self, items: Iterable[tuple[str, str]], n: int = DEFAULT_NGRAM) -> None:
        if not 1 <= n <= MAX_NGRAM:
            raise ValueError(f"n must be between 1 and {MAX_NGRAM}, not {n}")
        self.n = n
        self.keys: list[str] = []
        self.skipped = 0
        found: dict[int, list[tuple[NDArray[np.uint64], NDArray[np.int64]]]] = {}
        iterator = iter(items)
        while batch := tuple(itertools.islice(iterator, BUILD_BATCH)):
            for length, pairs in self._hash_batch(batch).items():
                found.setdefault(length, []).append(pairs)
        self.sizes = np.zeros(len(self.keys), dtype=np.int64)
        self._tables: dict[int, _Table] = {}
        for length, parts in found.items():
            hashes = np.concatenate([h for h, _o in parts])
            owners = np.concatenate([o for _h, o in parts])
            order = np.lexsort((owners, hashes))  # by hash, then item
            hashes, owners = hashes[order], owners[order]
            distinct = np.ones(hashes.size, dtype=bool)  # each n-gram once per item
            distinct[1:] = (hashes[1:] != hashes[:-1]) | (owners[1:] != owners[:-1])
            hashes, owners = hashes[distinct], owners[distinct]
            self.sizes += np.bincount(owners, minlength=len(self.keys))
            self._tables[length] = _Table(hashes, owners.astype(np.int32))

    def _hash_batch(
        self, batch: tuple[tuple[str, str], ...]
    ) -> dict[int, tuple[NDArray[np.uint64], NDArray[np.int64]]]:
        """(n-gram hash, item number) pairs of a batch of items, by n-gram length.

        The batch's words are hashed in one call; windows reaching past their item's last
        word are dropped, so no n-gram spans two items.
        """
        n = self.n
        words, offsets = batch_word_hashes([normalise(text) for _key, text in batch])
        starts, lengths = offsets[:-1], np.diff(offsets)
        kept = lengths >= min(n, MIN_WORDS)
        number = np.full(len(batch), -1, dtype=np.int64)
        number[kept] = len(self.keys) + np.arange(int(kept.sum()))
        self.keys.extend(key for (key, _text), keep in zip(batch, kept, strict=True) if keep)
        self.skipped += int((~kept).sum())

        pairs: dict[int, tuple[NDArray[np.uint64], NDArray[np.int64]]] = {}
        if words.size >= n:
            grams, item_of = ngrams_within(words, offsets, n)
            pairs[n] = (grams, number[item_of])
        short: dict[int, list[int]] = {}  # short items: one n-gram of their own length
        for item in np.flatnonzero(kept & (lengths < n)):
            short.setdefault(int(lengths[item]), []).append(int(item))
        for length, members in short.items():
            windows = starts[members][:, None] + np.arange(length)
            pairs[length] = (ngram_hashes_of_rows(words[windows]), number[members])
        return pairs

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def ngrams(self) -> int:
        return sum(table.hashes.size for table in self._tables.values())

    @property
    def nbytes(self) -> int:
        return sum(table.nbytes for table in self._tables.values())

    def match(self, text: str, threshold: float = 0.0) -> Contamination | None:
        """The item with the highest overlap above ``threshold``, if any."""
        return self.match_many([text], threshold)[0]

    def match_many(
        self, texts: Sequence[str], threshold: float = 0.0
    ) -> list[Contamination | None]:
        """``match`` for each of ``texts``, in one pass over them all.

        The texts' words are hashed in one call and their n-grams looked up together (a
        checking process's batch: a dozen array operations for all of them, where one text
        at a time paid those for each); windows reaching past their text's last word are
        dropped, so no n-gram spans two texts.
        """
        found: list[Contamination | None] = [None] * len(texts)
        if not self.keys or not texts:
            return found
        words, offsets = batch_word_hashes([normalise(text) for text in texts])
        hits = [
            table.owners_of(*ngrams_within(words, offsets, length))
            for length, table in self._tables.items()
        ]
        texts_hit = np.concatenate([t for t, _o in hits])
        owners_hit = np.concatenate([o for _t, o in hits]).astype(np.int64)
        # Distinct (text, item) pairs, by text then item, with how many n-grams they share.
        pairs, matched = np.unique(texts_hit * len(self.keys) + owners_hit, return_counts=True)
        text, owner = np.divmod(pairs, len(self.keys))
        overlap = matched / self.sizes[owner]
        # Each text's best item: the highest overlap, the first item of those tied (argmax).
        order = np.lexsort((owner, -overlap, text))
        first = order[np.r_[True, text[order][1:] != text[order][:-1]]] if order.size else order
        for best in first[overlap[first] > threshold]:
            found[int(text[best])] = Contamination(
                item=self.keys[int(owner[best])],
                overlap=float(overlap[best]),
                matched=int(matched[best]),
                ngrams=int(self.sizes[owner[best]]),
            )
        return found


class _Table:
    """Distinct n-gram hashes, sorted, with their items (CSR), behind a bit filter.

    Nearly every n-gram of a document is in no item; the filter (32 bits per indexed n-gram,
    about 3% false positives) answers those with one memory read each, and only the rest
    pay for a binary search in the (cache-unfriendly) sorted array.
    """

    def __init__(self, hashes: NDArray[np.uint64], owners: NDArray[np.int32]) -> None:
        # ``hashes`` arrives sorted, so each distinct hash's owners are contiguous.
        self.hashes, counts = np.unique(hashes, return_counts=True)
        self.offsets = np.zeros(self.hashes.size + 1, dtype=np.int64)
        np.cumsum(counts, out=self.offsets[1:])
        self.owners = owners
        self.shift = np.uint64(64 - min(40, max(12, int(self.hashes.size * 32).bit_length())))
        slots = self.hashes >> self.shift
        self.bits = np.zeros(max(1, (1 << (64 - int(self.shift))) // 64), dtype=np.uint64)
        np.bitwise_or.at(self.bits, slots >> np.uint64(6), np.uint64(1) << (slots & np.uint64(63)))

    @property
    def nbytes(self) -> int:
        return self.hashes.nbytes + self.offsets.nbytes + self.owners.nbytes + self.bits.nbytes

    def might_hold(self, grams: NDArray[np.uint64]) -> NDArray[np.bool_]:
        """The filter: False for n-grams certainly not indexed, True for the rest."""
        slots = grams >> self.shift
        bit = (self.bits[slots >> np.uint64(6)] >> (slots & np.uint64(63))) & np.uint64(1)
        held: NDArray[np.bool_] = bit.astype(bool)
        return held

    def owners_of(
        self, grams: NDArray[np.uint64], texts: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.int32]]:
        """The item of every indexed n-gram among ``grams``, once per distinct n-gram of each
        text (``texts``: the text of each n-gram), with that text: (texts, items)."""
        held = self.might_hold(grams)
        grams, texts = grams[held], texts[held]
        order = np.lexsort((grams, texts))
        grams, texts = grams[order], texts[order]
        distinct = np.ones(grams.size, dtype=bool)
        distinct[1:] = (grams[1:] != grams[:-1]) | (texts[1:] != texts[:-1])
        grams, texts = grams[distinct], texts[distinct]
        position = np.searchsorted(self.hashes, grams)
        indexed = position < self.hashes.size
        indexed[indexed] = self.hashes[position[indexed]] == grams[indexed]
        position, texts = position[indexed], texts[indexed]
        starts, ends = self.offsets[position], self.offsets[position + 1]
        # Every owner of every found n-gram: the ranges [start, end) laid end to end.
        spans = ends - starts
        flat = np.repeat(starts - np.cumsum(spans) + spans, spans) + np.arange(spans.sum())
        owners: NDArray[np.int32] = self.owners[flat]
        return np.repeat(texts, spans), owners
