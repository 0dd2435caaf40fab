"""Decontamination speed against 100k registered evaluation items, and what it catches.

Evaluation items of 30–120 words and ~9 KB documents, a share of which have an item pasted
in verbatim. Our path (hashed word n-grams, one sorted array, binary search) is timed against
the usual pure-Python way (a dict from n-gram strings to items) in the same run.

    python bench/decontam.py [--items 100000] [--documents 2000] [--ngram 13]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.dedup.minhash import normalise  # noqa: E402
from app.generation.checking import BATCH  # noqa: E402
from app.quality.decontam import ContaminationIndex  # noqa: E402
from tests.llm_server import compose  # noqa: E402


def corpus(
    items: int, documents: int, leak_share: float, seed: int
) -> tuple[list[tuple[str, str]], list[str], dict[int, str]]:
    """Items, documents, and for each leaking document the item it contains."""
    rng = random.Random(seed)
    evals = [
        (f"eval:{i}", compose(f"item-{seed}-{i}", i, rng.randint(30, 120))) for i in range(items)
    ]
    texts: list[str] = []
    leaks: dict[int, str] = {}
    for d in range(documents):
        text = compose(f"doc-{seed}-{d}", d, 1500)
        if rng.random() < leak_share:
            key, item = evals[rng.randrange(items)]
            cut = len(text) // 2
            text = f"{text[:cut]} {item} {text[cut:]}"
            leaks[d] = key
        texts.append(text)
    return evals, texts, leaks


class StringIndex:
    """The baseline: every item n-gram as a string in a dict, looked up one by one."""

    def __init__(self, items: list[tuple[str, str]], n: int) -> None:
        self.n = n
        self.owner: dict[bytes, str] = {}
        for key, text in items:
            words = normalise(text).split()
            for i in range(max(1, len(words) - n + 1)):
                self.owner.setdefault(b" ".join(words[i : i + n]), key)

    def match(self, text: str) -> str | None:
        words = normalise(text).split()
        for i in range(len(words) - self.n + 1):
            key = self.owner.get(b" ".join(words[i : i + self.n]))
            if key is not None:
                return key
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--ngram", type=int, default=13)
    parser.add_argument("--leaks", type=float, default=0.05, help="share of leaking documents")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    evals, texts, leaks = corpus(args.items, args.documents, args.leaks, args.seed)
    megabytes = sum(len(t) for t in texts) / 1e6
    item_words = sum(len(t.split()) for _k, t in evals) / len(evals)
    print(
        f"{len(evals):,} evaluation items ({item_words:.0f} words on average), "
        f"{len(texts):,} documents of {megabytes / len(texts) * 1e3:.1f} KB, "
        f"{len(leaks)} with an item pasted in; word {args.ngram}-grams, one core"
    )

    started = time.perf_counter()
    index = ContaminationIndex(evals, n=args.ngram)
    built = time.perf_counter() - started
    print(
        f"index: {index.ngrams:,} n-grams, built in {built:.1f} s "
        f"({len(evals) / built:,.0f} items/s), {index.nbytes / 1e6:.0f} MB"
    )

    started = time.perf_counter()
    found = {d: index.match(text) for d, text in enumerate(texts)}
    ours = time.perf_counter() - started

    # As a worker's checking process does: a batch of replies at a time.
    started = time.perf_counter()
    batched = [
        m for at in range(0, len(texts), BATCH) for m in index.match_many(texts[at : at + BATCH])
    ]
    ours_batched = time.perf_counter() - started
    assert batched == list(found.values())

    started = time.perf_counter()
    baseline = StringIndex(evals, args.ngram)
    baseline_built = time.perf_counter() - started
    started = time.perf_counter()
    theirs_found = {d: baseline.match(text) for d, text in enumerate(texts)}
    theirs = time.perf_counter() - started

    print(f"check, ours:     {len(texts) / ours:8,.0f} docs/s {megabytes / ours:6.1f} MB/s")
    print(
        f"check, baseline: {len(texts) / theirs:8,.0f} docs/s {megabytes / theirs:6.1f} MB/s "
        f"(dict of n-gram strings, built in {baseline_built:.1f} s)"
    )
    print(
        f"check, ours, {BATCH} at a time: {len(texts) / ours_batched:8,.0f} docs/s "
        f"{megabytes / ours_batched:6.1f} MB/s"
    )
    print(f"ratio: {theirs / ours:.1f}x the baseline, {theirs / ours_batched:.1f}x in batches")

    caught = sum(1 for d, key in leaks.items() if (m := found[d]) is not None and m.item == key)
    false = sum(1 for d, m in found.items() if m is not None and d not in leaks)
    agree = sum(1 for d in leaks if theirs_found[d] == leaks[d])
    print(
        f"planted leaks caught: {caught}/{len(leaks)} (baseline {agree}/{len(leaks)}); "
        f"clean documents flagged: {false}/{len(texts) - len(leaks)}"
    )


if __name__ == "__main__":
    main()
