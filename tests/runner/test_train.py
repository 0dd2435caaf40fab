"""The runner on CPU: loss falls, a resume is exact, and a resume onto other data is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from runner.data import DataError, Mixture, Source, open_base, open_export
from runner.model import preset
from runner.train import StepRecord, TrainConfig, Trainer
from tests.datasets.exports.tokenizer_fixture import Writer
from tests.runner.corpus import VOCAB, base_corpus, export_dir, tokenizer, write_megatron


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Source]:
    root = tmp_path_factory.mktemp("runner-data")
    tok = tokenizer(root / "tok")
    return {
        "base": open_base(base_corpus(root, tok, documents=150)),
        **open_export(export_dir(root / "export", tok)),
    }


MIX = Mixture({"base": 0.8, "aligned": 0.2})


def config(steps: int, **overrides: object) -> TrainConfig:
    base = {
        "model": preset("tiny", VOCAB, seq_len=32),
        "steps": steps,
        "batch_size": 8,
        "lr": 1e-2,
        "warmup_steps": 5,
        "device": "cpu",
        "log_every": 1000,
    }
    return TrainConfig(**(base | overrides))  # type: ignore[arg-type]


def trainer(data: dict[str, Source], out: Path, steps: int, **overrides: object) -> Trainer:
    return Trainer(
        config(steps, **overrides), data, MIX, out, manifest_hash="m", log=lambda _l: None
    )


@pytest.fixture(scope="module")
def repetitive(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Source]:
    """A tiny corpus a ~1M-parameter model can learn in a hundred steps: one document of each
    source, repeated."""
    root = tmp_path_factory.mktemp("runner-repetitive")
    tok = tokenizer(root / "tok")
    write_megatron(root / "base", Writer(1).documents(1, 100, 100) * 40, tok)
    texts = {"aligned": Writer(2).documents(1, 100, 100) * 20}
    return {"base": open_base(root / "base"), **open_export(export_dir(root / "e", tok, texts))}


def test_loss_falls_and_the_log_says_what_was_seen(
    repetitive: dict[str, Source], tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    run = Trainer(
        config(150, lr=3e-3, eval_every=75, val_windows=2),
        repetitive,
        MIX,
        tmp_path,
        manifest_hash="m",
        log=lambda _l: None,
    )
    records = run.run()
    first = sum(r.loss for r in records[:5]) / 5
    last = sum(r.loss for r in records[-10:]) / 10
    assert first > 5.0  # near ln(512) at the start
    assert last < 1.5
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 151))
    assert set(rows[-1]["val_loss"]) == {"base", "aligned"}
    # Held-back windows of each source: far below where the model started, and still falling.
    for source in ("base", "aligned"):
        assert rows[-1]["val_loss"][source] < 3.0
        assert rows[-1]["val_loss"][source] < rows[74]["val_loss"][source]
    seen = rows[-1]["tokens_seen"]
    assert seen["aligned"] + seen["base"] == 150 * 8 * 32
    assert abs(seen["aligned"] / (150 * 8 * 32) - 0.2) <= 0.001
    assert "mfu" not in rows[-1]  # no known peak on a CPU
    run_json = json.loads((tmp_path / "run.json").read_text())
    assert run_json["realised_shares"]["aligned"] == pytest.approx(0.2, abs=0.001)
    assert run_json["parameters"] == config(1).model.parameters()
    assert sum(p.numel() for p in run.model.parameters()) == run_json["parameters"]


def test_a_resumed_run_sees_the_same_batches_and_losses_bit_for_bit(
    data: dict[str, Source], tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    whole: list[StepRecord] = []
    straight = trainer(data, tmp_path / "a", 70)
    straight.run(until=20)
    checkpoint = straight.save()
    straight.run(on_step=whole.append)

    resumed_records: list[StepRecord] = []
    resumed = trainer(data, tmp_path / "b", 70)
    resumed.resume(checkpoint)
    assert resumed.step == 20
    resumed.run(on_step=resumed_records.append)
    assert len(whole) == len(resumed_records) == 50
    assert [r.batch_sha256 for r in resumed_records] == [r.batch_sha256 for r in whole]
    assert [r.loss for r in resumed_records] == [r.loss for r in whole]  # fp32, exactly
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_resume_onto_other_data_or_settings_is_refused(
    data: dict[str, Source], tmp_path: Path
) -> None:
    first = trainer(data, tmp_path / "a", 10)
    first.run(until=2)
    saved = first.save()
    other = Trainer(
        config(10), data, MIX, tmp_path / "b", manifest_hash="other", log=lambda _l: None
    )
    with pytest.raises(DataError, match="manifest_sha256"):
        other.resume(saved)
    mixed = Trainer(
        config(10), data, Mixture({"base": 0.5, "aligned": 0.5}), tmp_path / "c", manifest_hash="m"
    )
    with pytest.raises(DataError, match="mixture_sha256"):
        mixed.resume(saved)
    with pytest.raises(DataError, match="another configuration"):
        trainer(data, tmp_path / "d", 10, lr=1e-3).resume(saved)
