"""The runner's data: Megatron files read by memory map, verified exports, the mixture's
token shares, the insertion schedule, and an order that is the same every time."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from runner.data import (
    DataError,
    Mixture,
    SampleOrder,
    Source,
    open_base,
    open_export,
    read_megatron,
)
from tests.datasets.exports.tokenizer_fixture import EOS, Writer
from tests.runner.corpus import base_corpus, export_dir, tokenizer, write_megatron


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tokenizer(tmp_path_factory.mktemp("tok"))


def test_megatron_tokens_read_back_as_the_documents_tokenized(tmp_path: Path, tok: Path) -> None:
    texts = Writer(5).documents(7, 10, 40)
    write_megatron(tmp_path / "docs", texts, tok)
    tokenizer_ = Tokenizer.from_file(str(tok))
    eos = tokenizer_.token_to_id(EOS)
    expected = [t for text in texts for t in tokenizer_.encode(text).ids + [eos]]
    assert read_megatron(tmp_path / "docs").tolist() == expected
    (tmp_path / "docs.idx").write_bytes(b"NOTANIDX" + bytes(40))
    with pytest.raises(DataError, match="not a Megatron index"):
        read_megatron(tmp_path / "docs")


def test_an_export_file_with_a_wrong_sha256_is_refused(tmp_path: Path, tok: Path) -> None:
    directory = export_dir(tmp_path / "export", tok)
    assert set(open_export(directory)) == {"aligned"}
    data = bytearray((directory / "megatron/aligned.bin").read_bytes())
    data[len(data) // 2] ^= 0x01
    (directory / "megatron/aligned.bin").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"aligned\.bin: sha256 .* refusing to train on it"):
        open_export(directory)


def sources(tmp_path: Path, tok: Path) -> dict[str, Source]:
    return {
        "base": open_base(base_corpus(tmp_path, tok)),
        **open_export(export_dir(tmp_path / "export", tok)),
    }


def test_the_realised_token_share_matches_the_mixture(tmp_path: Path, tok: Path) -> None:
    mix = Mixture({"base": 0.97, "aligned": 0.03})
    order = SampleOrder(
        sources(tmp_path, tok), mix, seq_len=32, total_samples=4000, seed=0, manifest_hash="m"
    )
    counts = collections.Counter(order.next()[0] for _ in range(4000))
    # Every sample holds seq_len tokens: the token share is the sample share.
    assert abs(counts["aligned"] / 4000 - 0.03) <= 0.001
    assert order.realised_shares()["aligned"] == counts["aligned"] / 4000
    # At every prefix too, within one sample of the target.
    order = SampleOrder(
        sources(tmp_path, tok), mix, seq_len=32, total_samples=4000, seed=0, manifest_hash="m"
    )
    for i in range(1, 4001):
        order.next()
        assert abs(order.cursor.taken["aligned"] - 0.03 * i) <= 1


def test_the_insertion_schedule_puts_every_synthetic_sample_in_the_last_part(
    tmp_path: Path, tok: Path
) -> None:
    mix = Mixture({"base": 0.95, "aligned": 0.05}, insert_last=0.25)
    order = SampleOrder(
        sources(tmp_path, tok), mix, seq_len=32, total_samples=2000, seed=0, manifest_hash="m"
    )
    picks = [order.next()[0] for _ in range(2000)]
    assert "aligned" not in picks[:1500]
    assert picks.count("aligned") == 100  # 5% of the whole run, all in its last quarter
    with pytest.raises(DataError, match="cannot fit in the last 1%"):
        SampleOrder(
            sources(tmp_path, tok),
            Mixture({"base": 0.95, "aligned": 0.05}, insert_last=0.01),
            seq_len=32,
            total_samples=100,
            seed=0,
            manifest_hash="m",
        )


def test_the_order_depends_on_seed_and_manifest_and_resumes_from_its_cursor(
    tmp_path: Path, tok: Path
) -> None:
    data = sources(tmp_path, tok)
    mix = Mixture({"base": 0.9, "aligned": 0.1})

    def order(seed: int = 0, manifest: str = "m") -> SampleOrder:
        return SampleOrder(
            data, mix, seq_len=32, total_samples=500, seed=seed, manifest_hash=manifest
        )

    run = order()
    draws = [run.next() for _ in range(300)]
    again = order()
    assert [again.next() for _ in range(300)] == draws
    other_seed = order(seed=1)
    assert [other_seed.next() for _ in range(300)] != draws
    other_manifest = order(manifest="n")
    assert [other_manifest.next() for _ in range(300)] != draws
    # Stop at 120, carry the cursor over: the next 180 are the same.
    stopped = order()
    for _ in range(120):
        stopped.next()
    resumed = order()
    resumed.restore(stopped.state())
    assert [resumed.next() for _ in range(180)] == draws[120:]
    # Each epoch of a source visits every training window once, in a new order each time.
    alone = SampleOrder(
        data,
        Mixture({"base": 0.0, "aligned": 1.0}),
        seq_len=32,
        total_samples=10_000,
        seed=0,
        manifest_hash="m",
        val_windows=3,
    )
    per_epoch = alone.train_windows["aligned"]
    assert per_epoch == data["aligned"].windows(32) - 3
    windows = [alone.next()[1] for _ in range(2 * per_epoch)]
    assert sorted(windows[:per_epoch]) == list(range(per_epoch))
    assert sorted(windows[per_epoch:]) == list(range(per_epoch))
    assert windows[:per_epoch] != windows[per_epoch:]
    assert all(w < per_epoch for w in windows)  # the validation windows never train
    tokens = run.tokens(*draws[0])
    assert tokens.shape == (33,)
    assert np.array_equal(tokens, np.asarray(data[draws[0][0]].tokens[draws[0][1] * 32 :][:33]))
