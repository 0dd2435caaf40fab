"""The n-gram contamination index: what it catches, what it lets through, how it counts."""

from __future__ import annotations

import pytest

from app.quality.decontam import ContaminationIndex
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
    found = index.match(ARTICLE + " the dosage table it built for")
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
    items.append(("tiny", "too short"))
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
    assert results[0][2] == 1
    assert all(m is not None and m.overlap == 1.0 for m in results[0][3][:-1])


def test_many_short_items_are_indexed_one_ngram_each() -> None:
    items = [(f"s{k}", " ".join(f"w{k}x{j}" for j in range(8 + k % 5))) for k in range(3000)]
    index = ContaminationIndex(items)
    assert len(index) == 3000
    assert set(index.sizes) == {1}
    found = index.match(f"{ARTICLE} {items[1234][1]}.")
    assert found is not None
    assert found.item == "s1234"
