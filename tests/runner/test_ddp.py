"""``torchrun`` with two processes (gloo on CPU) trains as one process on the whole batch does,
through the runner's command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runner.corpus import base_corpus, export_dir, tokenizer

ROOT = Path(__file__).resolve().parents[2]


def train(out: Path, data: Path, *launcher: str) -> list[dict[str, object]]:
    command = [
        *launcher,
        "-m",
        "runner",
        "train",
        "--export",
        str(data / "export"),
        "--base",
        str(data / "base"),
        "--synthetic-share",
        "0.25",
        "--preset",
        "tiny",
        "--seq-len",
        "32",
        "--steps",
        "12",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.timeout(600)
def test_two_ranks_train_as_one_process_does(tmp_path: Path) -> None:
    tok = tokenizer(tmp_path / "tok")
    base_corpus(tmp_path, tok, documents=60)
    export_dir(tmp_path / "export", tok)
    alone = train(tmp_path / "one", tmp_path, sys.executable)
    ranks = train(
        tmp_path / "two",
        tmp_path,
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
    )
    assert [r["step"] for r in ranks] == [r["step"] for r in alone] == list(range(1, 13))
    for one, two in zip(alone, ranks, strict=True):
        # The same samples, split over two ranks and their gradients averaged: the same
        # losses up to the order of floating-point sums.
        assert two["loss"] == pytest.approx(one["loss"], rel=1e-4)
        assert two["tokens_seen"] == one["tokens_seen"]
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run["realised_shares"]["aligned"] == pytest.approx(0.25)
    assert (tmp_path / "two" / "latest.pt").is_file()
