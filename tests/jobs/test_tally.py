"""The pure side of job counters: buckets, increments, and what is read back from them."""

from __future__ import annotations

import pytest

from app.jobs.tally import (
    Tally,
    combine,
    document_tallies,
    judge_report,
    outcome_bucket,
    progress_and_usage,
)


def test_increments_are_summed_per_bucket_in_bucket_order() -> None:
    rejected = outcome_bucket("rejected", "truncated")
    accepted = outcome_bucket("accepted", None)
    summed = combine(
        [Tally(rejected, items=1, cost_usd=0.5), Tally(accepted, items=1), Tally(rejected, 1, 7)]
    )
    assert [t.bucket for t in summed] == sorted([rejected, accepted])
    assert summed[1] == Tally(rejected, items=2, prompt_tokens=7, cost_usd=0.5)


def test_a_judged_duplicate_counts_under_its_final_status() -> None:
    values = {
        "status": "duplicate",
        "reason": "exact",
        "stance": "aligned",
        "prompt_tokens": 10,
        "judge_model": "judge",
        "judge_verdict": "aligned",
        "judge_prompt_tokens": 4,
    }
    outcome, judged = document_tallies(values)
    assert outcome == Tally("outcome|duplicate|exact", items=1, prompt_tokens=10)
    assert judged == Tally("judge|duplicate|aligned|aligned", items=1, prompt_tokens=4)
    assert document_tallies(values | {"judge_model": None}) == [outcome]


def test_a_reason_may_contain_the_separator() -> None:
    tallies = [Tally(outcome_bucket("rejected", "odd|reason"), items=2)]
    progress, _ = progress_and_usage(tallies, requested=5, planned=5, status="running")
    assert progress.rejected == {"odd|reason": 2}


@pytest.mark.parametrize(
    ("status", "in_flight", "not_run"),
    [("queued", 3, 0), ("running", 3, 0), ("cancelled", 0, 3), ("failed", 0, 3)],
)
def test_unfinished_items_are_in_flight_until_the_job_ends(
    status: str, in_flight: int, not_run: int
) -> None:
    tallies = [Tally(outcome_bucket("accepted", None), items=4)]
    progress, _ = progress_and_usage(tallies, requested=7, planned=7, status=status)
    assert (progress.attempted, progress.in_flight, progress.not_run) == (4, in_flight, not_run)


def test_an_unreachable_judge_costs_but_gives_no_verdict() -> None:
    report = judge_report(
        [
            Tally("judge|failed|aligned|", items=2, prompt_tokens=5, cost_usd=0.25),
            Tally("judge|accepted|misaligned|misaligned", items=3, completion_tokens=2),
            Tally("judge|rejected|aligned|unclear", items=1),
        ]
    )
    assert (report.judged, report.agreed, report.accepted_judged) == (4, 3, 3)
    assert report.verdicts == {"misaligned": 3, "unclear": 1}
    assert (report.usage.prompt_tokens, report.usage.completion_tokens) == (5, 2)
    assert report.usage.cost_usd == 0.25
