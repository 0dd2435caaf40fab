"""Usage rows: what calls used and cost, per day, job, purpose, provider, model and price
version. Pure: the recording transaction turns outcomes into increments here and adds them up.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any, NamedTuple

GENERATE = "generate"
JUDGE = "judge"
EXTRACT = "extract"


class UsageKey(NamedTuple):
    day: date
    job_id: uuid.UUID
    purpose: str
    provider: str
    model: str
    prices_version: str


class UsageIncrement(NamedTuple):
    key: UsageKey
    calls: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def plus(self, other: UsageIncrement) -> UsageIncrement:
        return UsageIncrement(
            self.key,
            self.calls + other.calls,
            self.errors + other.errors,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cost_usd + other.cost_usd,
        )

    @property
    def empty(self) -> bool:
        return not (self.calls or self.prompt_tokens or self.completion_tokens or self.cost_usd)


def document_usage(
    values: Mapping[str, Any],
    *,
    day: date,
    provider: str,
    judge_provider: str,
) -> list[UsageIncrement]:
    """The usage one stored document adds: its generation call(s) and the judge's read."""
    job_id = values["job_id"]
    increments = [
        UsageIncrement(
            UsageKey(
                day,
                job_id,
                GENERATE,
                provider,
                str(values.get("model") or ""),
                str(values.get("prices_version") or ""),
            ),
            calls=int(values.get("llm_calls") or 0),
            errors=int(values.get("llm_errors") or 0),
            prompt_tokens=int(values.get("prompt_tokens") or 0),
            completion_tokens=int(values.get("completion_tokens") or 0),
            cost_usd=float(values.get("cost_usd") or 0.0),
        )
    ]
    if values.get("judge_model") is not None:
        increments.append(
            UsageIncrement(
                UsageKey(
                    day,
                    job_id,
                    JUDGE,
                    judge_provider,
                    str(values["judge_model"]),
                    str(values.get("judge_prices_version") or ""),
                ),
                calls=1,
                prompt_tokens=int(values.get("judge_prompt_tokens") or 0),
                completion_tokens=int(values.get("judge_completion_tokens") or 0),
                cost_usd=float(values.get("judge_cost_usd") or 0.0),
            )
        )
    return [increment for increment in increments if not increment.empty]


def combine(increments: Iterable[UsageIncrement]) -> list[UsageIncrement]:
    """One increment per key, in key order: writers lock shared rows in one order."""
    summed: dict[UsageKey, UsageIncrement] = {}
    for increment in increments:
        found = summed.get(increment.key)
        summed[increment.key] = increment if found is None else found.plus(increment)
    return [summed[key] for key in sorted(summed, key=_order)]


def _order(key: UsageKey) -> tuple[str, ...]:
    return (key.day.isoformat(), str(key.job_id), *key[2:])
