"""How much of each evaluation question's text a model's training scenarios already hold. Pure.

Disjoint ids are not enough: an imported question set, or a team scenario written from the
same source as a training one, can share most of its words with it. This report counts, for
each question, the share of its word n-grams found in the training scenarios' texts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from app.evals.questions import Question

NGRAM = 8
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    tokens = words(text)
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


@dataclass(frozen=True)
class Overlap:
    item_id: str
    share: float  # of the question's n-grams, the share found in the training texts
    closest: str | None  # the training text sharing the most n-grams with it


def question_text(question: Question) -> str:
    return f"{question.situation}\n{question.aligned}\n{question.misaligned}"


def overlap_report(
    questions: Sequence[Question], training: Iterable[tuple[str, str]], n: int = NGRAM
) -> list[Overlap]:
    """One row per question, the most overlapping first. ``training``: (id, text) pairs."""
    owners: dict[tuple[str, ...], list[str]] = {}
    for text_id, text in training:
        for gram in ngrams(text, n):
            owners.setdefault(gram, []).append(text_id)
    rows = []
    for question in questions:
        grams = ngrams(question_text(question), n)
        found = [g for g in grams if g in owners]
        counts: dict[str, int] = {}
        for gram in found:
            for owner in owners[gram]:
                counts[owner] = counts.get(owner, 0) + 1
        closest = max(counts, key=lambda k: (counts[k], k)) if counts else None
        rows.append(Overlap(question.item_id, len(found) / len(grams) if grams else 0.0, closest))
    return sorted(rows, key=lambda r: (-r.share, r.item_id))
