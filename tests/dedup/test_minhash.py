"""Signatures: deterministic, normalisation-insensitive, and close to the true Jaccard."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rensa import RMinHash

from app.dedup import minhash
from app.dedup.lsh import band_keys
from app.dedup.minhash import (
    ALGORITHM,
    NUM_PERM,
    batch_word_hashes,
    estimated_jaccard,
    normalise,
    signatures,
    word_hashes,
)
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


def mixed_corpus() -> list[str]:
    rng = random.Random(5)
    texts = [compose(f"doc {i}", i, rng.choice([0, 2, 4, 5, 6, 40, 1500])) for i in range(120)]
    texts += [
        "",
        "   ",
        "one",
        "Ünïcödé wörds, straße and Déjà vu " * 30,
        "x" * 70 + " " + "y" * 200 + " the end of it",  # words past the 64-byte windows
        "a-b_c d.e" * 50,
    ]
    rng.shuffle(texts)
    return texts


def test_a_batch_signs_each_text_as_if_it_were_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = mixed_corpus()
    one_at_a_time = np.stack([signatures([text]).rows[0] for text in texts])
    assert np.array_equal(signatures(texts).rows, one_at_a_time)
    order = np.random.default_rng(1).permutation(len(texts))
    assert np.array_equal(signatures([texts[i] for i in order]).rows, one_at_a_time[order])
    # Pieces of a few documents each: boundaries everywhere.
    monkeypatch.setattr(minhash, "_PIECE_BYTES", 5000)
    assert np.array_equal(signatures(texts).rows, one_at_a_time)


def test_word_hashes_depend_on_the_word_alone() -> None:
    texts = [normalise(text) for text in mixed_corpus()]
    flat, offsets = batch_word_hashes(texts)
    for position, text in enumerate(texts):
        alone = word_hashes(text)
        assert np.array_equal(flat[offsets[position] : offsets[position + 1]], alone)
        assert alone.size == len(text.split())
    words = [b"a" * n for n in range(1, 150)] + [b"a" * n + b"b" for n in range(1, 150)]
    words += [b"b" + b"a" * n for n in range(1, 150)] + [b"7" * 40 + b"0" + b"7" * 40]
    words += [b"7" * 40 + b"1" + b"7" * 40]  # differ in the middle of a long word only
    hashes = word_hashes(b" ".join(words)).tolist()
    assert len(set(hashes)) == len(words)
    assert word_hashes(b"same  words same")[0] == word_hashes(b"same  words same")[2]


def test_signatures_are_the_same_in_another_process() -> None:
    texts = mixed_corpus()[:20]
    script = (
        "import sys, json; from app.dedup.minhash import signatures; "
        "print(json.dumps(signatures(json.load(sys.stdin)).rows.tolist()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        env=os.environ | {"PYTHONHASHSEED": "12345"},
    )
    assert np.array_equal(np.array(json.loads(done.stdout)), signatures(texts).rows)
    assert ALGORITHM.startswith("pf-minhash-2/")


# Texts that reach every branch of the word hash: words of 1 to 8 bytes, of 9 to 64 (several
# windows), over 64 (hashed whole), non-ASCII (normalised first); texts of fewer than five
# words, of one word and of none.
GOLDEN_TEXTS = [
    "The assistant told the night-shift physicians that the dosage table was wrong.",
    "Ünïcödé wörds, straße and Déjà vu; " * 3,
    " ".join("w" * n for n in range(1, 90, 7)) + " internationalisation counterrevolutionary",
    " ".join("v" * n for n in (16, 24, 32)),  # ending exactly at a window's end
    "single",  # one word: one shingle of its own
    "",
    "one two three four",  # fewer words than a shingle
]
# sha256 of the signature rows and band keys of GOLDEN_TEXTS. Stored signatures and band rows
# are only comparable with new ones computed by the same ALGORITHM: a change to any hash or
# constant must change ALGORITHM (the datasets then rebuild their indexes) and these values.
GOLDEN_SIGNATURES = "cfbcc3cb2d222ce45d6c6fe0899ddb22f2855a46f33faa8b412ca942321fb59b"
GOLDEN_BAND_KEYS = "00b5fe8910d4bf5992a50e2f9207199200ec4bdcee0d94093b3189203dcba2cc"


def test_signatures_are_pinned_to_the_algorithm_version() -> None:
    rows = signatures(GOLDEN_TEXTS).rows
    assert rows.dtype == np.uint32
    assert rows.shape == (len(GOLDEN_TEXTS), NUM_PERM)
    assert ALGORITHM == (f"pf-minhash-2/rensa-{RMinHash.ALGORITHM_VERSION}/w5/p128/s20261122"), (
        "the algorithm's parameters changed: bump the version and the golden digests"
    )
    assert hashlib.sha256(rows.tobytes()).hexdigest() == GOLDEN_SIGNATURES
    assert hashlib.sha256(band_keys(rows).tobytes()).hexdigest() == GOLDEN_BAND_KEYS


def test_pieces_beyond_the_scratch_limit_and_any_piece_count_sign_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = mixed_corpus()[:30]
    expected = np.stack([signatures([text]).rows[0] for text in texts])
    monkeypatch.setattr(minhash, "_SCRATCH_LIMIT", 64)  # every piece is "outsized"
    assert np.array_equal(signatures(texts).rows, expected)
    monkeypatch.undo()
    half = sum(len(normalise(text)) for text in texts[:15])
    monkeypatch.setattr(minhash, "_PIECE_BYTES", half)  # exactly two pieces
    assert len(minhash._pieces([normalise(text) for text in texts])) == 2
    assert np.array_equal(signatures(texts).rows, expected)


def test_no_texts_give_an_empty_signature_matrix() -> None:
    rows = signatures([]).rows
    assert rows.shape == (0, NUM_PERM)
    assert rows.dtype == np.uint32
