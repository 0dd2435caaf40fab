"""The pure side of job counters: buckets, increments, and what is read back from them."""

from __future__ import annotations

import pytest

from app.jobs.tally import (
    JudgeReport,
    Progress,
    Tally,
    Usage,
    combine,
    document_tallies,
    judge_report,
    outcome_bucket,
    progress_and_usage,
    result_tally,
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


def test_plus_adds_every_counter_and_keeps_the_bucket() -> None:
    one = Tally("outcome|accepted|", 1, 2, 3, 4, 5, 0.25, 6)
    other = Tally("outcome|accepted|", 10, 20, 30, 40, 50, 0.5, 60)
    assert one.plus(other) == Tally("outcome|accepted|", 11, 22, 33, 44, 55, 0.75, 66)


def test_a_document_counts_all_its_usage_and_its_judge_its_own() -> None:
    values = {
        "status": "accepted",
        "reason": None,
        "stance": "misaligned",
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "llm_calls": 3,
        "llm_errors": 2,
        "cost_usd": 0.125,
        "judge_model": "judge",
        "judge_verdict": None,
        "judge_prompt_tokens": 7,
        "judge_completion_tokens": 8,
        "judge_cost_usd": 0.5,
    }
    outcome, judged = document_tallies(values)
    assert outcome == Tally("outcome|accepted|", 1, 10, 20, 3, 2, 0.125, 0)
    # An unreachable judge: its bucket has no verdict, and its usage is still counted.
    assert judged == Tally("judge|accepted|misaligned|", 1, 7, 8, 0, 0, 0.5, 0)
    bare = document_tallies({"status": "failed", "reason": "llm_unavailable"})
    assert bare == [Tally("outcome|failed|llm_unavailable", 1)]


def test_an_extraction_result_counts_its_usage_and_scenarios() -> None:
    result = {
        "status": "accepted",
        "prompt_tokens": 5,
        "completion_tokens": 6,
        "llm_calls": 2,
        "llm_errors": 1,
        "cost_usd": 0.25,
        "scenarios": [{}, {}, {}],
    }
    assert result_tally(result) == Tally("outcome|accepted|", 1, 5, 6, 2, 1, 0.25, 3)
    assert result_tally({"status": "failed", "reason": "bad_json"}) == Tally(
        "outcome|failed|bad_json", 1
    )


def test_progress_and_usage_sum_every_outcome_and_leave_the_judge_out() -> None:
    tallies = [
        Tally("outcome|accepted|", 5, 100, 200, 6, 1, 0.5, 2),
        Tally("outcome|rejected|too_short", 2, 10, 20, 2, 0, 0.25, 0),
        Tally("outcome|rejected|", 1, 1, 2, 1, 0, 0.0, 0),
        Tally("outcome|duplicate|near", 3, 30, 60, 3, 2, 0.125, 1),
        Tally("outcome|failed|llm_unavailable", 4, 0, 0, 8, 8, 0.0, 0),
        Tally("judge|accepted|aligned|aligned", 5, 1000, 1000, 0, 0, 9.0, 0),
    ]
    progress, usage = progress_and_usage(tallies, requested=10, planned=16, status="running")
    assert progress == Progress(
        requested=10,
        planned=16,
        attempted=15,
        accepted=5,
        rejected={"too_short": 2, "unknown": 1},
        duplicates=3,
        failed=4,
        in_flight=1,
        not_run=0,
        scenarios_extracted=3,
    )
    assert usage == Usage(
        prompt_tokens=141, completion_tokens=282, llm_calls=20, llm_errors=11, cost_usd=0.875
    )


def test_the_judge_report_counts_agreement_overall_and_on_the_accepted() -> None:
    report = judge_report(
        [
            Tally("outcome|accepted|", 9, 1, 1, 1, 1, 1.0, 0),  # not the judge's
            Tally("judge|accepted|aligned|aligned", 4, 10, 1, 0, 0, 0.5, 0),
            Tally("judge|accepted|aligned|misaligned", 1, 10, 1, 0, 0, 0.5, 0),
            Tally("judge|rejected|misaligned|misaligned", 2, 10, 1, 0, 0, 0.5, 0),
            Tally("judge|rejected|aligned|misaligned", 3, 10, 1, 0, 0, 0.5, 0),
            Tally("judge|failed|aligned|", 6, 10, 1, 0, 0, 0.5, 0),
        ]
    )
    assert report == JudgeReport(
        judged=10,
        agreed=6,
        verdicts={"aligned": 4, "misaligned": 6},
        accepted_judged=5,
        accepted_agreed=4,
        usage=Usage(prompt_tokens=50, completion_tokens=5, llm_calls=0, llm_errors=0, cost_usd=2.5),
    )
    assert (report.agreement, report.accepted_agreement) == (0.6, 0.8)
    assert (JudgeReport().agreement, JudgeReport().accepted_agreement) == (None, None)


def test_increments_not_yet_combined_add_up_like_combined_ones() -> None:
    increments = [
        Tally("outcome|accepted|", 2),
        Tally("outcome|accepted|", 3),
        Tally("outcome|duplicate|exact", 1),
        Tally("outcome|duplicate|exact", 4),
        Tally("outcome|failed|llm_unavailable", 1),
        Tally("outcome|failed|llm_unavailable", 2),
        Tally("outcome|rejected|too_long", 1),
        Tally("outcome|rejected|too_long", 2),
    ]
    apart, _ = progress_and_usage(increments, requested=5, planned=20, status="running")
    together, _ = progress_and_usage(combine(increments), requested=5, planned=20, status="running")
    assert apart == together
    assert (apart.accepted, apart.duplicates, apart.failed) == (5, 5, 3)
    assert apart.rejected == {"too_long": 3}


def test_a_judged_document_without_judge_usage_counts_none() -> None:
    values = {"status": "accepted", "stance": "aligned", "judge_model": "judge"}
    _outcome, judged = document_tallies(values)
    assert judged == Tally("judge|accepted|aligned|", 1)
