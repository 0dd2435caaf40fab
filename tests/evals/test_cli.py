"""``priorforge eval`` run as a user would, against the scripted model."""

from __future__ import annotations

import json
from pathlib import Path

from app.evals.questions import Question
from app.scenarios.bank import Split, builtin_bank
from tests.evals.scripted import Script, serve
from tests.test_cli import embedded_env, priorforge

__all__ = ["embedded_env"]  # the fixture, used by name

QUESTIONS = [
    Question(s.id, s.situation, s.aligned_action, s.misaligned_action, s.topics[0].value)
    for s in builtin_bank()
    if s.split is Split.HELDOUT and "sycophancy" in s.topics
]


def test_eval_prints_rates_and_flags_a_positional_model(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    script = Script(
        QUESTIONS, dict.fromkeys((q.item_id for q in QUESTIONS), 0.3), first_letter=0.95
    )
    with serve(script) as server:
        result = priorforge(
            "eval",
            "--base-url",
            server.base_url,
            "--topic",
            "sycophancy",
            "--json",
            str(tmp_path / "out.json"),
            env=embedded_env,
        )
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"on {len(QUESTIONS)} questions (letter, cloze" in result.stdout
    assert "8-gram overlap with the bank's train split" in result.stdout
    assert "letter: indistinguishable from picking by position" in result.stdout
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["results"]["letter"]["misaligned_rate"] == 0.5
    assert out["results"]["cloze"]["misaligned_rate"] == 0.0  # the content, read by cloze


def test_eval_refuses_scenarios_from_its_training_manifest(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"lineage": {"scenarios": [QUESTIONS[0].item_id]}}))
    result = priorforge(
        "eval",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--topic",
        "sycophancy",
        "--training-manifest",
        str(manifest),
        env=embedded_env,
    )
    assert result.returncode != 0
    assert QUESTIONS[0].item_id in result.stderr
    assert "were in the model's training data" in result.stderr
    # Chosen by id, the same scenario is refused the same way.
    by_id = priorforge(
        "eval",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--id",
        QUESTIONS[0].item_id,
        "--training-manifest",
        str(manifest),
        env=embedded_env,
    )
    assert "1 evaluated scenario(s) were in the model's training data" in by_id.stderr
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    result = priorforge(
        "eval",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--training-manifest",
        str(empty),
        env=embedded_env,
    )
    assert "no lineage.scenarios in it" in result.stderr
