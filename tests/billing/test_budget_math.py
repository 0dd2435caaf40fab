"""How many items a budget leaves room for, and usage increments adding up per key."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from app.billing.budget import UNCAPPED, Cap, affordable
from app.billing.usage import GENERATE, JUDGE, UsageIncrement, UsageKey, combine, document_usage


def test_a_cap_admits_items_while_spent_plus_reserved_plus_their_worst_case_fits() -> None:
    cap = Cap("the job's budget", cap_usd=1.0, spent_usd=0.3, reserved_usd=0.2)
    assert cap.left_usd == pytest.approx(0.5)
    assert cap.items(0.1) == 5  # exactly at the cap: the last one still fits
    assert cap.items(0.12) == 4
    assert cap.items(0.6) == 0
    assert Cap("x", 1.0, 1.2, 0.0).items(0.1) == 0  # already over (a cap lowered meanwhile)
    assert Cap("x", 1.0, 0.5, 0.0).items(0.0) == UNCAPPED  # free items never stop a job
    assert Cap("x", 1.0, 1.5, 0.0).items(0.0) == 0


def test_the_tightest_cap_binds() -> None:
    job = Cap("the job's budget", 1.0, 0.0, 0.0)
    team = Cap("the team's budget for 2026-12", 10.0, 9.75, 0.0)
    assert affordable(20, 0.1, [job, team]) == (2, team)
    assert affordable(20, 0.1, [job]) == (10, job)
    assert affordable(3, 0.1, [job, team]) == (2, team)
    assert affordable(1, 0.1, [job]) == (1, None)
    assert affordable(5, 0.1, []) == (5, None)
    assert "$9.7500 spent of $10.0000" in team.reached()


def test_usage_adds_up_per_day_job_purpose_model_and_price_version() -> None:
    job = uuid.uuid4()
    day = date(2026, 12, 5)
    values = {
        "job_id": job,
        "model": "m",
        "prices_version": "2026-12",
        "llm_calls": 2,
        "llm_errors": 1,
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "cost_usd": 0.5,
        "judge_model": "j",
        "judge_prices_version": "2026-11",
        "judge_prompt_tokens": 70,
        "judge_completion_tokens": 5,
        "judge_cost_usd": 0.1,
    }
    one = document_usage(values, day=day, provider="p", judge_provider="q")
    assert [u.key for u in one] == [
        UsageKey(day, job, GENERATE, "p", "m", "2026-12"),
        UsageKey(day, job, JUDGE, "q", "j", "2026-11"),
    ]
    summed = combine(one + one + document_usage(values, day=day, provider="p2", judge_provider="q"))
    by_key = {u.key: u for u in summed}
    assert by_key[UsageKey(day, job, GENERATE, "p", "m", "2026-12")] == UsageIncrement(
        UsageKey(day, job, GENERATE, "p", "m", "2026-12"), 4, 2, 200, 100, 1.0
    )
    assert by_key[UsageKey(day, job, JUDGE, "q", "j", "2026-11")].calls == 3
    assert len(summed) == 3
    # A worker lost before any call: nothing to count.
    assert (
        document_usage({"job_id": job, "model": ""}, day=day, provider="p", judge_provider="q")
        == []
    )
