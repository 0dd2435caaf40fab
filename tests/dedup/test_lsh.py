from __future__ import annotations

import random

import numpy as np
import pytest
from numpy.typing import NDArray

from app.dedup import lsh
from app.dedup.lsh import MemoryIndex, band_ints, band_keys, from_bytes, matrix_from_bytes, to_bytes
from app.dedup.minhash import signatures
from tests.llm_server import compose


def test_near_copies_are_caught_and_the_first_one_kept() -> None:
    base = compose("original", 1, 1500)
    words = base.split()
    rng = random.Random(3)
    for position in rng.sample(range(len(words)), len(words) // 100):
        words[position] = "changed"
    near = " ".join(words)
    other = compose("unrelated", 2, 1500)
    rows = signatures([base, near, other]).rows
    index: MemoryIndex[str] = MemoryIndex(threshold=0.7)
    assert index.add_unless_duplicate("base", rows[0]) is None
    match = index.add_unless_duplicate("near", rows[1])
    assert match is not None
    assert match[0] == "base"
    assert match[1] > 0.8
    assert index.add_unless_duplicate("other", rows[2]) is None
    assert set(index.signatures) == {"base", "other"}  # a duplicate is not indexed


def planted(count: int, seed: int) -> tuple[list[str], NDArray[np.uint32]]:
    """Originals, and copies of them with 0-10% of words changed."""
    rng = random.Random(seed)
    originals = [compose(f"o{i}", i, 300) for i in range(count // 3)]
    texts = list(originals)
    while len(texts) < count:
        words = rng.choice(originals).split()
        for position in rng.sample(range(len(words)), int(len(words) * rng.random() * 0.1)):
            words[position] = f"e{rng.randrange(10**9)}"
        texts.append(" ".join(words))
    return texts, signatures(texts).rows


def one_at_a_time(rows: NDArray[np.uint32]) -> list[tuple[str, float] | None]:
    index: MemoryIndex[str] = MemoryIndex(threshold=0.7)
    return [index.add_unless_duplicate(str(i), row) for i, row in enumerate(rows)]


@pytest.mark.parametrize("batch", [1, 7, 64, 600])
def test_batched_decisions_are_those_made_one_at_a_time(batch: int) -> None:
    _texts, rows = planted(600, 1)
    expected = one_at_a_time(rows)
    assert sum(match is not None for match in expected) > 100
    index: MemoryIndex[str] = MemoryIndex(threshold=0.7)
    found: list[tuple[str, float] | None] = []
    for begin in range(0, len(rows), batch):
        items = [str(i) for i in range(begin, min(begin + batch, len(rows)))]
        found += index.add_unless_duplicates(items, rows[begin : begin + batch])
    assert found == expected
    assert list(index.ids()) == [str(i) for i, match in enumerate(expected) if match is None]


def test_many_runs_and_sealed_single_inserts_are_all_searched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lsh, "_RECENT_KEYS", 3 * lsh.BANDS)  # seal every few inserts
    _texts, rows = planted(300, 2)
    expected = one_at_a_time(rows)
    index: MemoryIndex[str] = MemoryIndex(threshold=0.7)
    found: list[tuple[str, float] | None] = []
    for position, row in enumerate(rows):
        if position % 2:
            found += index.add_unless_duplicates([str(position)], row.reshape(1, -1))
        else:
            found.append(index.add_unless_duplicate(str(position), row))
    assert found == expected
    assert len(index._runs) < 12  # merged as they grow
    kept = [i for i, match in enumerate(expected) if match is None]
    assert [match[0] if match else None for match in index.query_many(rows[kept])] == [
        str(i) for i in kept
    ]


def test_band_keys_of_a_matrix_are_each_rows_band_ints() -> None:
    _texts, rows = planted(30, 3)
    keys = band_keys(rows)
    assert keys.shape == (30, lsh.BANDS)
    assert all(keys[i].tolist() == band_ints(rows[i]) for i in range(30))
    assert len(set(keys[0].tolist())) == lsh.BANDS
    assert np.array_equal(matrix_from_bytes([to_bytes(r) for r in rows]), rows)
    assert np.array_equal(from_bytes(to_bytes(rows[0])), rows[0])
