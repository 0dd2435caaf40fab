"""What a job will cost before it runs. Pure: the caller measures prompts and history.

Expected generation calls are the documents asked for over the acceptance rate (the team's
own on this model once it has enough history, else a default), never more than the job's item
cap. Prompt tokens per call come from rendering the job's first items; completion tokens per
call from the team's history on the model, else the middle of the asked length. The judge,
when on, reads every accepted document once. The worst case, every planned item at
``max_tokens``, bounds what the job can spend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DEFAULT_ACCEPTANCE = 0.9
# Calls on a model before its history replaces the defaults.
MIN_HISTORY_CALLS = 50
TOKENS_PER_WORD = 4 / 3
JUDGE_OVERHEAD_TOKENS = 400  # the judge prompt around the document and scenario
JUDGE_COMPLETION_TOKENS = 60


@dataclass(frozen=True)
class History:
    """A team's past generation on one model: items that ran, documents accepted, calls and
    the completion tokens they used."""

    items: int = 0
    accepted: int = 0
    calls: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Prices:
    prompt_per_mtok: float
    completion_per_mtok: float

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (
            prompt_tokens * self.prompt_per_mtok + completion_tokens * self.completion_per_mtok
        ) / 1e6


@dataclass(frozen=True)
class Estimate:
    documents: int
    acceptance: float
    items: int
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    worst_case_cost_usd: float
    judge_calls: int = 0
    assumptions: list[str] = field(default_factory=list)


def estimate(
    *,
    documents: int,
    max_items: int,
    max_tokens: int,
    prompt_tokens_per_call: float,
    length_words: tuple[int, int],
    history: History,
    prices: Prices,
    judge_prices: Prices | None = None,
) -> Estimate:
    assumptions: list[str] = []
    if history.calls >= MIN_HISTORY_CALLS and history.items:
        acceptance = max(history.accepted / history.items, 1 / 20)
        per_call = history.completion_tokens / history.calls
        calls_per_item = history.calls / history.items
        assumptions.append(
            f"acceptance {acceptance:.0%}, {per_call:.0f} completion tokens and "
            f"{calls_per_item:.2f} calls per item: this team's last {history.items} items "
            "on the model"
        )
    else:
        acceptance = DEFAULT_ACCEPTANCE
        per_call = min(max_tokens, sum(length_words) / 2 * TOKENS_PER_WORD)
        calls_per_item = 1.0
        assumptions.append(
            f"acceptance {acceptance:.0%} and {per_call:.0f} completion tokens per call "
            f"(the middle of {length_words[0]}-{length_words[1]} words): no history on the "
            "model yet"
        )
    items = min(max_items, math.ceil(documents / acceptance))
    calls = math.ceil(items * calls_per_item)
    prompt = calls * prompt_tokens_per_call
    completion = calls * per_call
    cost = prices.cost(prompt, completion)
    worst = prices.cost(max_items * calls_per_item * prompt_tokens_per_call, max_items * max_tokens)
    judge_calls = 0
    if judge_prices is not None:
        judge_calls = documents
        judge_prompt = judge_calls * (per_call + JUDGE_OVERHEAD_TOKENS)
        judge_completion = judge_calls * JUDGE_COMPLETION_TOKENS
        cost += judge_prices.cost(judge_prompt, judge_completion)
        worst += judge_prices.cost(
            max_items * (max_tokens + JUDGE_OVERHEAD_TOKENS), max_items * JUDGE_COMPLETION_TOKENS
        )
        prompt += judge_prompt
        completion += judge_completion
        assumptions.append("the judge reads every accepted document once")
    return Estimate(
        documents=documents,
        acceptance=acceptance,
        items=items,
        calls=calls + judge_calls,
        prompt_tokens=round(prompt),
        completion_tokens=round(completion),
        cost_usd=cost,
        worst_case_cost_usd=worst,
        judge_calls=judge_calls,
        assumptions=assumptions,
    )
