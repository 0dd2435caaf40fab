from __future__ import annotations

import random

from app.dedup.lsh import MemoryIndex
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
