"""Corpus diversity measures. Pure: texts in, figures out."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

from datasketch import MinHash

from app.quality.gates import words

SHINGLE = 5
PERMUTATIONS = 128
MAX_PAIRS = 20_000


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams over all n-grams in the corpus (Li et al. 2016's distinct-n)."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        tokens = words(text)
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        seen.update(grams)
        total += len(grams)
    return len(seen) / total if total else 0.0


def minhash(text: str) -> MinHash:
    tokens = words(text)
    shingles = {" ".join(tokens[i : i + SHINGLE]) for i in range(max(1, len(tokens) - SHINGLE + 1))}
    signature = MinHash(num_perm=PERMUTATIONS, seed=1)
    signature.update_batch([s.encode() for s in shingles])
    return signature


def mean_pairwise_jaccard(texts: Sequence[str], seed: int = 0) -> tuple[float, int]:
    """Mean estimated word-5-gram Jaccard over all pairs (a seeded sample when too many)."""
    if len(texts) < 2:
        return 0.0, 0
    signatures = [minhash(text) for text in texts]
    pairs = list(itertools.combinations(range(len(texts)), 2))
    if len(pairs) > MAX_PAIRS:
        pairs = random.Random(seed).sample(pairs, MAX_PAIRS)
    total = sum(signatures[a].jaccard(signatures[b]) for a, b in pairs)
    return total / len(pairs), len(pairs)


@dataclass(frozen=True)
class DiversityReport:
    documents: int
    distinct: dict[int, float]
    mean_jaccard: float
    pairs: int
    scenarios_used: int
    scenarios_selected: int
    forms_used: int
    forms_selected: int
    per_stance: dict[str, int]


def diversity(
    texts: Sequence[str],
    scenarios: Sequence[str],
    forms: Sequence[str],
    stances: Sequence[str],
    *,
    scenarios_selected: int,
    forms_selected: int,
) -> DiversityReport:
    jaccard, pairs = mean_pairwise_jaccard(texts)
    per_stance: dict[str, int] = {}
    for stance in stances:
        per_stance[stance] = per_stance.get(stance, 0) + 1
    return DiversityReport(
        documents=len(texts),
        distinct={n: distinct_n(texts, n) for n in (1, 2, 3, 4)},
        mean_jaccard=jaccard,
        pairs=pairs,
        scenarios_used=len(set(scenarios)),
        scenarios_selected=scenarios_selected,
        forms_used=len(set(forms)),
        forms_selected=forms_selected,
        per_stance=dict(sorted(per_stance.items())),
    )
