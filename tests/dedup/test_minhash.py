"""Signatures: deterministic, normalisation-insensitive, and close to the true Jaccard."""

from __future__ import annotations

import random

import numpy as np
import pytest

from app.dedup.minhash import ALGORITHM, estimated_jaccard, normalise, signatures
from tests.llm_server import compose


def true_jaccard(a: str, b: str, n: int = 5) -> float:
    wa, wb = normalise(a).split(), normalise(b).split()  # bytes words: fine for sets
    sa = {tuple(wa[i : i + n]) for i in range(len(wa) - n + 1)}
    sb = {tuple(wb[i : i + n]) for i in range(len(wb) - n + 1)}
    return len(sa & sb) / len(sa | sb)


def edited(text: str, share: float, seed: int) -> str:
    words = text.split()
    rng = random.Random(seed)
    for index in rng.sample(range(len(words)), int(len(words) * share)):
        words[index] = f"edit{index}"
    return " ".join(words)


def test_same_text_same_signature_and_normalisation() -> None:
    rows = signatures(["Hello, World!  Again", "hello world again", "hello world again"]).rows
    assert rows.shape == (3, 128)
    assert np.array_equal(rows[0], rows[1])
    assert np.array_equal(rows[1], rows[2])
    assert "w5/p128" in ALGORITHM


def test_unicode_text_is_folded_too() -> None:
    assert normalise("Ｃafé—Déjà VU") == "café déjà vu".encode()
    assert normalise("STRASSE Straße") == b"strasse strasse"


@pytest.mark.parametrize("share", [0.01, 0.03, 0.05])
def test_estimates_track_true_jaccard(share: float) -> None:
    errors = []
    for seed in range(20):
        base = compose(f"doc {seed}", seed, 1500)
        near = edited(base, share, seed)
        rows = signatures([base, near]).rows
        errors.append(abs(estimated_jaccard(rows[0], rows[1]) - true_jaccard(base, near)))
    # 128 permutations: the estimate's standard error is about 0.04 at these similarities.
    assert float(np.mean(errors)) < 0.05


def test_unrelated_texts_look_unrelated() -> None:
    rows = signatures([compose("a", 1, 1500), compose("b", 2, 1500)]).rows
    assert estimated_jaccard(rows[0], rows[1]) < 0.05


def test_empty_and_tiny_texts() -> None:
    rows = signatures(["", "one two", "one two"]).rows
    assert rows.shape == (3, 128)
    assert np.array_equal(rows[1], rows[2])
