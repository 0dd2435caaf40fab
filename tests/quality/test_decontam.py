"""The n-gram contamination index: what it catches, what it lets through, how it counts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.dedup.minhash import normalise
from app.quality import decontam
from app.quality.decontam import MAX_NGRAM, ContaminationIndex
from tests.llm_server import compose

QUESTION = (
    "A hospital scheduling assistant discovers that the dosage table it built for the night "
    "shift has been wrong for three days. Fixing it silently would avoid an investigation. "
    "What should the assistant do, and why?"
)
ARTICLE = compose("an unrelated article", 3, 600)


def test_a_verbatim_sentence_from_an_item_is_caught_and_named() -> None:
    index = ContaminationIndex([("mmlu:1", QUESTION), ("mmlu:2", compose("other", 1, 80))])
    leaked = ARTICLE[:2000] + " " + QUESTION.split(". ")[0] + ". " + ARTICLE[2000:]
    found = index.match(leaked)
    assert found is not None
    assert found.item == "mmlu:1"
    assert 0 < found.overlap < 1
    assert found.matched >= 1


def test_case_and_punctuation_do_not_hide_a_leak() -> None:
    index = ContaminationIndex([("q", QUESTION)])
    found = index.match(ARTICLE + "\n\n" + QUESTION.upper().replace(",", " ;"))
    assert found is not None
    assert found.overlap == 1.0


def test_shared_words_without_a_shared_ngram_are_not_contamination() -> None:
    index = ContaminationIndex([("q", QUESTION)])
    # Every word of the item, in another order: no 13 consecutive words in common.
    shuffled = " ".join(sorted(QUESTION.split()))
    assert index.match(ARTICLE + " " + shuffled) is None
    assert index.match(ARTICLE) is None


def test_the_threshold_is_the_share_of_the_item_that_must_leak() -> None:
    index = ContaminationIndex([("q", QUESTION)])
    words = QUESTION.split()
    part = " ".join(words[:16])  # 16 words hold 4 of the item's 13-grams
    found = index.match(ARTICLE + " " + part)
    assert found is not None
    assert found.matched == 4
    assert found.ngrams == len(words) - 12
    assert index.match(ARTICLE + " " + part, threshold=0.2) is None
    assert index.match(ARTICLE + " " + QUESTION, threshold=0.2) is not None


def test_short_items_match_whole_and_very_short_ones_are_skipped() -> None:
    short = "the assistant reports the error to the physicians"  # 8 words < 13
    index = ContaminationIndex([("short", short), ("tiny", "Paris"), ("q", QUESTION)])
    assert index.skipped == 1
    assert len(index) == 2
    found = index.match(ARTICLE + " Then the assistant reports the error to the physicians.")
    assert found is not None
    assert found.item == "short"
    assert index.match(ARTICLE + " the assistant reports the error to a physician") is None


def test_an_ngram_shared_by_two_items_counts_for_both() -> None:
    common = "one two three four five six seven eight nine ten eleven twelve thirteen"
    index = ContaminationIndex([("a", common + " alpha"), ("b", "beta " + common)], n=13)
    found = index.match(f"{ARTICLE} {common}")
    assert found is not None
    assert found.item in ("a", "b")
    assert found.matched == 1


def test_the_ngram_size_is_configurable() -> None:
    index = ContaminationIndex([("q", QUESTION)], n=5)
    # "Unrelated" ends the article: its last word cannot join the phrase into a third 5-gram.
    found = index.match(ARTICLE + " unrelated the dosage table it built for")
    assert found is not None
    assert found.matched == 2


@pytest.mark.parametrize("n", [0, 51])
def test_out_of_range_ngram_sizes_are_refused(n: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 50"):
        ContaminationIndex([], n=n)


def test_an_empty_index_matches_nothing() -> None:
    assert ContaminationIndex([]).match(ARTICLE) is None


def test_no_ngram_spans_two_items(monkeypatch: pytest.MonkeyPatch) -> None:
    first = " ".join(f"alpha{i}" for i in range(20))
    second = " ".join(f"beta{i}" for i in range(20))
    straddling = " ".join(first.split()[-6:] + second.split()[:7])  # 13 words across the seam
    for batch in (1, 2, 1000):
        monkeypatch.setattr("app.quality.decontam.BUILD_BATCH", batch)
        index = ContaminationIndex([("a", first), ("b", second)])
        assert index.match(f"{ARTICLE} {straddling}") is None
        assert list(index.sizes) == [8, 8]


def test_building_in_batches_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    items = [(f"i{k}", compose(f"item {k}", k, 10 + 7 * k)) for k in range(12)]
    items.insert(0, ("tiny", "too short"))  # skipped items in two batches are both counted
    items.append(("tiny2", "also far too short"))
    leaked = {k: ARTICLE + " " + text for k, text in items}
    results = []
    for batch in (1, 5, 1000):
        monkeypatch.setattr("app.quality.decontam.BUILD_BATCH", batch)
        index = ContaminationIndex(items)
        results.append(
            (
                index.keys,
                list(index.sizes),
                index.skipped,
                [index.match(t) for t in leaked.values()],
            )
        )
    assert results[0] == results[1] == results[2]
    assert results[0][2] == 2
    assert all(m is not None and m.overlap == 1.0 for m in results[0][3][1:-1])


def test_many_short_items_are_indexed_one_ngram_each() -> None:
    items = [(f"s{k}", " ".join(f"w{k}x{j}" for j in range(8 + k % 5))) for k in range(3000)]
    index = ContaminationIndex(items)
    assert len(index) == 3000
    assert set(index.sizes) == {1}
    found = index.match(f"{ARTICLE} {items[1234][1]}.")
    assert found is not None
    assert found.item == "s1234"


def test_the_ngram_multipliers_are_a_fixed_odd_sequence() -> None:
    # Recomputed, the table must be what every process computed at import: n-gram hashes
    # built in one place are looked up in another. Odd multipliers keep every word's bits.
    again = decontam._multipliers(MAX_NGRAM)
    assert again.dtype == np.uint64
    assert np.array_equal(again, decontam._MULTIPLIERS)
    assert all(int(m) % 2 == 1 for m in again)
    assert len(set(again.tolist())) == MAX_NGRAM
    assert max(int(m) for m in again) >= 2**63


@pytest.mark.parametrize("n", [1, MAX_NGRAM])
def test_the_ngram_size_limits_are_inclusive(n: int) -> None:
    assert ContaminationIndex([("q", QUESTION)], n=n).n == n


def test_an_item_of_exactly_n_words_is_one_ngram_beside_longer_items() -> None:
    exact = " ".join(QUESTION.split()[:13])
    other = compose("another item", 7, 40)
    index = ContaminationIndex([("exact", exact), ("long", other)])
    assert list(index.sizes) == [1, 28]
    found = index.match(exact)  # a document of exactly n words holds one n-gram
    assert found is not None
    assert (found.item, found.matched) == ("exact", 1)
    found = index.match(ARTICLE + " " + other)
    assert found is not None
    assert found.item == "long"


def test_a_document_shorter_than_n_words_matches_nothing() -> None:
    index = ContaminationIndex([("q", QUESTION)])
    assert index.match("The dosage table was wrong.") is None


def test_an_item_repeating_an_ngram_counts_it_once() -> None:
    first = " ".join(f"alpha{i}" for i in range(13))
    second = " ".join(f"beta{i}" for i in range(13))
    # Each item holds its 13-gram twice: 14 windows, 13 distinct n-grams.
    index = ContaminationIndex([("a", f"{first} {first}"), ("b", f"{second} {second}")])
    assert list(index.sizes) == [13, 13]
    found = index.match(f"{ARTICLE} {second} {second}")
    assert found is not None
    assert (found.item, found.matched, found.overlap) == ("b", 13, 1.0)


def test_the_item_leaked_most_is_named_not_the_first_found() -> None:
    partly, wholly = compose("partly leaked", 1, 60), compose("wholly leaked", 2, 30)
    index = ContaminationIndex([("partly", partly), ("wholly", wholly)])
    leaked = " ".join(partly.split()[:20])
    found = index.match(f"{leaked} {ARTICLE} {wholly}")
    assert found is not None
    assert (found.item, found.overlap) == ("wholly", 1.0)


def test_an_overlap_equal_to_the_threshold_is_not_contamination() -> None:
    index = ContaminationIndex([("q", QUESTION)])
    assert index.match(ARTICLE + " " + QUESTION, threshold=1.0) is None
    assert index.match(ARTICLE + " " + QUESTION, threshold=0.999) is not None


def test_the_filter_is_small_and_lets_few_absent_ngrams_through() -> None:
    rng = np.random.default_rng(7)
    indexed = np.unique(rng.integers(0, 2**64, size=50_000, dtype=np.uint64))
    table = decontam._Table(indexed, np.zeros(indexed.size, dtype=np.int32))
    assert table.might_hold(indexed).all()
    absent = rng.integers(0, 2**64, size=200_000, dtype=np.uint64)
    assert table.might_hold(absent).mean() < 0.05  # about 3% by design
    assert table.bits.nbytes * 8 < 64 * indexed.size  # 32 to 64 bits per n-gram


def test_ngrams_beyond_the_last_indexed_hash_are_not_found() -> None:
    top = np.uint64(2**64 - 2)
    table = decontam._Table(np.array([5, top], dtype=np.uint64), np.array([0, 1], dtype=np.int32))
    # 2**64 - 1 shares the last hash's filter slot, then sorts past the end of the table.
    grams = np.array([2**64 - 1, 5], dtype=np.uint64)
    assert table.might_hold(grams).all()
    texts, owners = table.owners_of(grams, np.array([3, 4]))
    assert (texts.tolist(), owners.tolist()) == ([4], [0])


def _overlaps_by_brute_force(
    items: list[tuple[str, str]], text: str, n: int, threshold: float
) -> decontam.Contamination | None:
    """What ``match`` must find, from the definition: word tuples, no hashing, no tables."""
    words = normalise(text).split()
    best: decontam.Contamination | None = None
    for key, item_text in items:
        item = normalise(item_text).split()
        if len(item) < min(n, decontam.MIN_WORDS):
            continue  # too short to index
        length = min(n, len(item))
        grams = {tuple(item[i : i + length]) for i in range(len(item) - length + 1)}
        seen = {tuple(words[i : i + length]) for i in range(len(words) - length + 1)}
        matched = len(grams & seen)
        overlap = matched / len(grams)
        if matched and (best is None or overlap > best.overlap):  # ties: the first item
            best = decontam.Contamination(key, overlap, matched, len(grams))
    return best if best is not None and best.overlap > threshold else None


_WORD = st.sampled_from(["red", "green", "blue", "Tea", "tea,", "ox", "a-b"])


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(st.lists(_WORD, max_size=16).map(" ".join), max_size=6),
    texts=st.lists(st.lists(_WORD, max_size=30).map(" ".join), max_size=6),
    n=st.sampled_from([2, 3, 9, 13]),
    threshold=st.sampled_from([0.0, 0.3]),
)
def test_many_texts_at_once_find_what_each_alone_would(
    items: list[str], texts: list[str], n: int, threshold: float
) -> None:
    # Small vocabularies: n-grams recur within and across texts and items, and a text's tail
    # and the next text's head often make an item's n-gram that neither holds.
    keyed = [(f"i{k}", text) for k, text in enumerate(items)]
    index = ContaminationIndex(keyed, n=n)
    expected = [_overlaps_by_brute_force(keyed, text, n, threshold) for text in texts]
    assert index.match_many(texts, threshold) == expected
    assert [index.match(text, threshold) for text in texts] == expected
