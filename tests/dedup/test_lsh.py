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


def changed(signature: NDArray[np.uint32], positions: range) -> NDArray[np.uint32]:
    """The signature with ``positions`` given new values: each lowers the estimate by 1/128.
    Positions from 4 on leave the first band alone, so the rows stay candidates."""
    copy = signature.copy()
    copy[list(positions)] += np.uint32(1_000_003)
    return copy


BASE = np.random.default_rng(11).integers(0, 2**32, size=128, dtype=np.uint32)


def test_a_query_threshold_replaces_the_index_threshold_at_its_margin() -> None:
    index: MemoryIndex[str] = MemoryIndex(threshold=0.9)
    index.insert("base", BASE)
    probe = changed(BASE, range(4, 36))  # estimate 96/128 = 0.75, the margined 0.8
    assert index.query(probe) is None
    assert index.query(probe, threshold=0.8) == ("base", 0.75)
    assert index.query(changed(BASE, range(4, 37)), threshold=0.8) is None
    assert index.query_many(np.stack([probe, BASE]), threshold=0.8) == [
        ("base", 0.75),
        ("base", 1.0),
    ]


def test_a_batch_row_exactly_at_the_margined_threshold_is_a_duplicate() -> None:
    index: MemoryIndex[str] = MemoryIndex(threshold=0.8)
    batch = np.stack([BASE, changed(BASE, range(4, 36)), changed(BASE, range(4, 37))])
    results = index.add_unless_duplicates(["a", "b", "c"], batch)
    assert results == [None, ("a", 0.75), None]


def test_a_batch_row_is_matched_to_the_closest_earlier_row() -> None:
    index: MemoryIndex[str] = MemoryIndex(threshold=0.8)
    far = changed(BASE, range(4, 60))  # 72/128 of BASE: new
    closer = changed(BASE, range(20, 60))  # 88/128 of BASE (new), 112/128 of far
    results = index.add_unless_duplicates(["base", "far", "closer"], np.stack([BASE, far, closer]))
    assert results == [None, None, ("far", 112 / 128)]  # not the first row, "base"
    later = changed(far, range(4, 10))  # 122/128 of far, 72/128 of BASE
    assert index.add_unless_duplicates(["later"], later[None, :]) == [("far", 122 / 128)]


def test_the_closer_of_a_stored_item_and_an_earlier_batch_row_wins() -> None:
    index: MemoryIndex[str] = MemoryIndex(threshold=0.8)
    index.extend(["stored"], BASE[None, :])
    apart = changed(BASE, range(4, 40))  # 92/128 of stored: new
    between = changed(BASE, range(12, 40))  # 100/128 of stored, 120/128 of apart
    results = index.add_unless_duplicates(["apart", "between"], np.stack([apart, between]))
    assert results == [None, ("apart", 120 / 128)]


def test_extending_skips_what_is_indexed_and_keeps_each_signature() -> None:
    index: MemoryIndex[str] = MemoryIndex(threshold=0.8)
    rows = np.stack([changed(BASE, range(4 * k, 4 * k + 4)) for k in range(1, 6)])
    index.extend(["a", "b"], rows[:2])
    index.extend(["b", "c", "d", "e"], rows[1:])
    assert len(index) == 5
    assert {item: row.tolist() for item, row in index.signatures.items()} == {
        item: row.tolist() for item, row in zip("abcde", rows, strict=True)
    }


def test_a_query_with_its_band_keys_searches_every_band() -> None:
    index: MemoryIndex[str] = MemoryIndex(threshold=0.3)
    index.insert("base", BASE)
    # Shares only the last band (positions 76-79) and the unbanded positions 80-127.
    probe = changed(BASE, range(76))
    keys = band_keys(probe)[0]
    assert [k == b for k, b in zip(keys, band_keys(BASE)[0], strict=True)].count(True) == 1
    assert index.query(probe, keys=keys) == ("base", 52 / 128)


def test_of_equally_close_documents_the_stored_one_wins_over_an_earlier_batch_row() -> None:
    index: MemoryIndex[str] = MemoryIndex(threshold=0.8)
    index.extend(["stored"], BASE[None, :])
    apart = changed(BASE, range(4, 40))  # 92/128 of stored: new
    even = changed(BASE, range(4, 22))  # 110/128 of stored and of apart
    results = index.add_unless_duplicates(["apart", "even"], np.stack([apart, even]))
    assert results == [None, ("stored", 110 / 128)]
