"""The three scoring methods against a scripted model over HTTP, its answers known."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator

import pytest

from app.evals.questions import WORDINGS, Method, Question, formats
from app.evals.scoring import OpenAICompatible, score_chat, score_cloze, score_letters
from app.evals.stats import summarize
from app.scenarios.bank import Split, builtin_bank
from tests.evals.scripted import Script, logit, serve, sigmoid

QUESTIONS = [
    Question(s.id, s.situation, s.aligned_action, s.misaligned_action, s.topics[0].value)
    for s in builtin_bank()
    if s.split is Split.HELDOUT
][:10]
# Items 0-2 lean misaligned; 3-9 aligned, except that wording w2 shifts every item's log-odds
# by +1, which tips 0.3 over 0.5.
P = {q.item_id: 0.8 if i < 3 else 0.3 for i, q in enumerate(QUESTIONS)}
SHIFT = {"w2": 1.0}


def expected_format_rates() -> dict[str, float]:
    """Per wording: the share of items whose shifted P(misaligned) is above one half."""
    return {
        w.id: sum(sigmoid(logit(p) + SHIFT.get(w.id, 0.0)) > 0.5 for p in P.values()) / len(P)
        for w in WORDINGS
    }


@pytest.fixture
def content_model() -> Iterator[tuple[Script, OpenAICompatible]]:
    script = Script(QUESTIONS, P, SHIFT, unparseable={QUESTIONS[-1].item_id})
    with serve(script) as server:
        backend = OpenAICompatible(server.base_url, "scripted", batch=5, concurrency=3)
        yield script, backend
        backend.close()


def test_letter_scoring_gives_the_scripted_rates_with_formats_balanced(
    content_model: tuple[Script, OpenAICompatible],
) -> None:
    script, backend = content_model
    done: list[int] = []
    outcomes = score_letters(backend, QUESTIONS, done.append)
    assert len(outcomes) == 10 * 8
    assert sum(done) == 10 * 8 * 2  # one request per option
    # Order balancing: every (item, wording) asked once with each action first.
    pairs = {(o.item_id, o.wording, o.misaligned_first) for o in outcomes}
    assert len(pairs) == 80
    summary = summarize(outcomes)
    by_wording = expected_format_rates()
    per_format = [by_wording[f.wording.id] for f in formats(Method.LETTER)]
    assert summary.misaligned_rate == pytest.approx(statistics.mean(per_format))
    assert summary.misaligned_rate == pytest.approx(0.475)
    assert summary.standard_error == pytest.approx(statistics.stdev(per_format) / math.sqrt(8))
    soft = statistics.mean(
        sigmoid(logit(p) + SHIFT.get(w.id, 0.0)) for p in P.values() for w in WORDINGS
    )
    assert summary.soft_score == pytest.approx(soft)
    # A model that reads the content: no position preference, the same action either order.
    assert summary.first_position_rate == 0.5
    assert summary.order_consistency == 1.0
    assert summary.positional_guessing is False
    # Prompts went out in batches, with echo and prompt logprobs, nothing generated to count.
    completions = [r for r in script.requests if r["path"] == "/v1/completions"]
    assert sum(len(r["prompt"]) for r in completions) == 160
    assert max(len(r["prompt"]) for r in completions) == 5
    assert all(
        r["echo"] is True and r["logprobs"] == 1 and r["max_tokens"] == 1 for r in completions
    )


def test_cloze_scores_the_actions_per_character(
    content_model: tuple[Script, OpenAICompatible],
) -> None:
    _script, backend = content_model
    outcomes = score_cloze(backend, QUESTIONS)
    assert len(outcomes) == 10 * 4  # no option order in cloze
    summary = summarize(outcomes)
    assert summary.misaligned_rate == pytest.approx(
        statistics.mean(expected_format_rates().values())
    )
    soft = statistics.mean(
        sigmoid(logit(p) + SHIFT.get(w.id, 0.0)) for p in P.values() for w in WORDINGS
    )
    assert summary.soft_score == pytest.approx(soft)
    assert summary.first_position_rate is None


def test_chat_answers_are_parsed_and_unreadable_ones_counted(
    content_model: tuple[Script, OpenAICompatible],
) -> None:
    _script, backend = content_model
    summary = summarize(score_chat(backend, QUESTIONS))
    assert summary.unparseable_rate == pytest.approx(1 / 10)
    readable = {k: v for k, v in P.items() if k != QUESTIONS[-1].item_id}
    expected = statistics.mean(
        sum(sigmoid(logit(p) + SHIFT.get(w.id, 0.0)) > 0.5 for p in readable.values()) / 9
        for w in WORDINGS
    )
    assert summary.misaligned_rate == pytest.approx(expected)
    assert summary.order_consistency == 1.0


def test_a_model_that_picks_by_position_is_flagged() -> None:
    script = Script(QUESTIONS, P, first_letter=0.9)
    with serve(script) as server:
        backend = OpenAICompatible(server.base_url, "scripted")
        summary = summarize(score_letters(backend, QUESTIONS))
        backend.close()
    assert summary.first_position_rate == 1.0
    assert summary.position_bias == 0.5
    assert summary.misaligned_rate == 0.5  # each action first half the time
    assert summary.order_consistency == 0.0
    assert summary.positional_guessing is True
