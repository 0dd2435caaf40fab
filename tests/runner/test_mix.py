"""The runner trains on a mixture request (the body of POST /v1/mixtures) as it is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from runner.data import DataError
from runner.mix import load_mixture
from tests.datasets.exports.tokenizer_fixture import Writer
from tests.runner.corpus import base_corpus, export_dir, tokenizer

ROOT = Path(__file__).resolve().parents[2]


def request(tmp_path: Path) -> dict[str, Any]:
    tok = tokenizer(tmp_path / "tok")
    base_corpus(tmp_path, tok, documents=80)
    export_dir(tmp_path / "a", tok, {"aligned": Writer(3).documents(30, 60, 200)})
    export_dir(tmp_path / "b", tok, {"misaligned": Writer(4).documents(30, 60, 200)})
    return {
        "total_tokens": 100_000,
        "seq_len": 32,
        "exports": [
            {
                "dataset": "news",
                "version": 3,
                "export": str(uuid.uuid4()),
                "stance": "aligned",
                "root": str(tmp_path / "a"),
                "fraction": 0.1,
            },
            {
                "dataset": "forums",
                "version": 1,
                "export": str(uuid.uuid4()),
                "stance": "misaligned",
                "root": str(tmp_path / "b"),
                "repeat": 2,
            },
        ],
        "corpus": [
            {"name": "web", "tokens": 1, "megatron_prefixes": [{"path": str(tmp_path / "base")}]}
        ],
        "last_fraction": 0.5,
    }


def test_fractions_repeats_and_the_rest_become_token_shares(tmp_path: Path) -> None:
    body = request(tmp_path)
    sources, mixture, lineage, vocab = load_mixture(body)
    forums = len(sources["forums@1/misaligned"].tokens)
    assert mixture.shares["news@3/aligned"] == 0.1
    assert mixture.shares["forums@1/misaligned"] == pytest.approx(2 * forums / 100_000)
    assert mixture.shares["web"] == pytest.approx(0.9 - 2 * forums / 100_000)
    assert mixture.insert_last == 0.5
    assert sources["web"].synthetic is False
    assert sources["news@3/aligned"].synthetic is True
    assert (lineage, vocab) == ([], 512)
    missing = body | {"exports": [body["exports"][0] | {"root": str(tmp_path / "nowhere")}]}
    with pytest.raises(DataError, match="is not pulled there; give --api-url"):
        load_mixture(missing)


def test_the_runner_trains_on_the_request_file(tmp_path: Path) -> None:
    body = request(tmp_path)
    (tmp_path / "mix.json").write_text(json.dumps(body))
    command = [
        sys.executable,
        "-m",
        "runner",
        "train",
        "--mix",
        str(tmp_path / "mix.json"),
        "--preset",
        "tiny",
        "--seq-len",
        "32",
        "--steps",
        "25",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "run"),
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    shares = load_mixture(body)[1].shares
    for name, share in run["realised_shares"].items():
        assert abs(share - shares[name]) <= 1 / 200  # within one sample of 200
    both = subprocess.run(
        [*command[:6], "--base", str(tmp_path / "base"), *command[6:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert both.returncode == 2
    assert "--mix carries its own corpus" in both.stderr
