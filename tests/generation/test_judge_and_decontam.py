"""The stance judge and decontamination inside real jobs, against the LLM test server."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from app.generation import judging
from app.scenarios.bank import Split, builtin_bank
from tests.conftest import Team, run_local, spec
from tests.generation.test_pipeline import documents
from tests.llm_server import FaultConfig, LLMTestServer

JUDGED = {"judge": {"enabled": True}}


@pytest.fixture(autouse=True)
def _forget_refusals() -> Iterator[None]:
    """The process remembers endpoints that refused structured output; tests start afresh."""
    yield
    judging._unstructured.clear()


def judge_requests(llm: LLMTestServer) -> list[dict[str, Any]]:
    return [r for r in llm.state.recent if "Which action did the AI" in str(r["messages"])]


def test_the_judge_confirms_stances_and_counts_its_usage_apart(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    raw = spec(documents=6, stances={"aligned": 1, "misaligned": 1}, **JUDGED)
    view = run_local(team, raw, settings, store)
    assert view.job.status == "succeeded", view.job.error
    docs = documents(view.job.id)
    assert len(docs) == 6
    assert all(d.status == "accepted" for d in docs)
    assert {d.stance for d in docs} == {"aligned", "misaligned"}
    assert all(d.judge_verdict == d.stance and d.judge_prompt_tokens > 0 for d in docs)
    # Structured output was asked for; both action orders were used.
    asked = judge_requests(llm)
    assert len(asked) == 6
    assert all(r["response_format"]["type"] == "json_schema" for r in asked)
    assert all(r["temperature"] == 0 for r in asked)
    report = view.judge
    assert report is not None
    assert (report.judged, report.agreed, report.agreement) == (6, 6, 1.0)
    assert report.accepted_agreement == 1.0
    assert report.usage.prompt_tokens == sum(d.judge_prompt_tokens for d in docs)
    # The judge's tokens are its own: the generation usage does not include them.
    assert view.usage.prompt_tokens == sum(d.prompt_tokens for d in docs)
    assert view.usage.llm_calls == 6


def test_mismatches_unclear_and_malformed_verdicts_are_rejected(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    llm.faults.judge_script.extend(["wrong", "unclear", "bad_json", "bad_json", "fenced"])
    one_at_a_time = settings.model_copy(update={"llm_concurrency": 1})
    view = run_local(team, spec(documents=3, **JUDGED), one_at_a_time, store)
    assert view.job.status == "succeeded", view.job.error
    assert view.progress.accepted == 3
    assert view.progress.rejected == {"judge_invalid": 1, "stance_mismatch": 1, "stance_unclear": 1}
    docs = {d.reason: d for d in documents(view.job.id)}
    assert "planned aligned, judge read misaligned" in (docs["stance_mismatch"].detail or "")
    assert docs["judge_invalid"].judge_verdict == "invalid"
    assert "no JSON object" in (docs["judge_invalid"].detail or "")
    # A malformed answer is asked again once: two calls' tokens on that document.
    invalid, unclear = docs["judge_invalid"], docs["stance_unclear"]
    assert invalid.judge_completion_tokens > unclear.judge_completion_tokens
    assert view.judge is not None
    assert view.judge.verdicts == {"aligned": 3, "invalid": 1, "misaligned": 1, "unclear": 1}
    assert view.judge.accepted_agreement == 1.0
    assert view.judge.agreement == 3 / 6


def test_a_malformed_verdict_asked_again_can_still_accept(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    llm.faults.judge_script.extend(["bad_json", "right"])
    one_at_a_time = settings.model_copy(update={"llm_concurrency": 1})
    view = run_local(team, spec(documents=1, **JUDGED), one_at_a_time, store)
    assert (view.progress.accepted, view.progress.attempted) == (1, 1)
    assert len(judge_requests(llm)) == 2


def test_endpoints_without_structured_output_get_plain_json_requests(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    llm.reset(FaultConfig(structured_output=False))
    view = run_local(team, spec(documents=2, **JUDGED), settings, store)
    assert view.job.status == "succeeded", view.job.error
    assert view.progress.accepted == 2
    assert view.progress.failed == 0
    assert any("response_format" not in r for r in judge_requests(llm))


def test_audit_mode_records_disagreement_without_rejecting(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    llm.faults.judge_script.extend(["wrong"])
    one_at_a_time = settings.model_copy(update={"llm_concurrency": 1})
    audit = {"judge": {"enabled": True, "reject": False}}
    view = run_local(team, spec(documents=3, **audit), one_at_a_time, store)
    assert (view.progress.accepted, view.progress.attempted) == (3, 3)
    assert view.judge is not None
    assert view.judge.accepted_judged == 3
    assert view.judge.accepted_agreement == 2 / 3


def heldout_situation() -> tuple[str, str]:
    scenario = next(s for s in builtin_bank() if s.split is Split.HELDOUT)
    return scenario.id, scenario.situation


def test_a_verbatim_leak_of_a_heldout_scenario_is_rejected(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    scenario_id, situation = heldout_situation()
    llm.reset(FaultConfig(leak_text=situation))
    llm.faults.script.extend(["ok", "leak"])
    one_at_a_time = settings.model_copy(update={"llm_concurrency": 1})
    raw = spec(documents=3, length_words={"min": 40, "max": 600})
    view = run_local(team, raw, one_at_a_time, store)
    assert view.job.status == "succeeded", view.job.error
    assert view.progress.accepted == 3
    assert view.progress.rejected == {"contaminated": 1}
    leaked = next(d for d in documents(view.job.id) if d.status == "rejected")
    assert situation in (leaked.text or "")
    assert leaked.contamination is not None
    assert leaked.contamination["item"] == f"scenario:{scenario_id}"
    assert leaked.contamination["overlap"] == 1.0
    assert f"scenario:{scenario_id}" in (leaked.detail or "")


def test_with_decontamination_off_the_same_leak_is_accepted(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    _scenario_id, situation = heldout_situation()
    llm.reset(FaultConfig(leak_text=situation))
    llm.faults.script.extend(["leak"])
    raw = spec(documents=1, length_words={"min": 40, "max": 600}, decontam={"enabled": False})
    view = run_local(team, raw, settings, store)
    assert (view.progress.accepted, view.progress.rejected) == (1, {})
    assert situation in (documents(view.job.id)[0].text or "")


def test_an_unreachable_judge_fails_the_item_and_says_why(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    llm.faults.script.extend(["ok", "500", "500"])  # the first item's judge, asked and retried
    quick = settings.model_copy(
        update={"llm_concurrency": 1, "llm_max_retries": 1, "llm_backoff_base_seconds": 0.01}
    )
    view = run_local(team, spec(documents=1, **JUDGED), quick, store)  # one call at a time
    assert view.job.status == "succeeded", view.job.error
    assert (view.progress.accepted, view.progress.failed) == (1, 1)
    failed = next(d for d in documents(view.job.id) if d.status == "failed")
    assert failed.reason == "judge_unavailable"
    assert "llm_unavailable: gave up after 2 attempts" in (failed.detail or "")
    assert failed.judge_verdict is None


@pytest.mark.parametrize(("style", "expected"), [("json_object", "json_object"), ("none", None)])
def test_the_structured_output_style_follows_the_provider(
    llm: LLMTestServer, team: Team, settings: Any, store: Any, style: str, expected: str | None
) -> None:
    styled = settings.model_copy(update={"llm_structured_output": style})
    view = run_local(team, spec(documents=1, **JUDGED), styled, store)
    assert view.progress.accepted == 1
    (asked,) = judge_requests(llm)
    sent = asked.get("response_format") or {}
    assert sent.get("type") == expected
    if expected == "json_object":
        assert sent["schema"]["required"] == ["action", "evidence"]


def test_a_rejected_judge_call_fails_its_item_but_keeps_structured_output(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    llm.faults.judge_script.extend(["too_long"])
    view = run_local(team, spec(documents=1, **JUDGED), settings, store)
    assert (view.progress.accepted, view.progress.failed) == (1, 1)
    failed = next(d for d in documents(view.job.id) if d.status == "failed")
    assert "maximum context length" in (failed.detail or "")
    assert all("response_format" in r for r in judge_requests(llm))


def test_a_judge_that_refuses_our_key_fails_the_job_at_once(
    llm: LLMTestServer,
    team: Team,
    settings: Any,
    store: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    llm.faults.judge_script.extend(["bad_key"] * 50)
    one_at_a_time = settings.model_copy(update={"llm_concurrency": 1})
    with caplog.at_level(logging.ERROR, "app.generation.pipeline"):
        view = run_local(team, spec(documents=20, **JUDGED), one_at_a_time, store)
    assert view.job.status == "failed"
    assert "stance judge" in (view.job.error or "")
    assert "HTTP 401" in (view.job.error or "")
    # The operator's log says which job stopped and why, once.
    failures = [r.getMessage() for r in caplog.records if r.name == "app.generation.pipeline"]
    assert failures == [f"job {view.job.id} failed: {view.job.error}"]
    # It stopped at the first refusal: after the first judge request, at most the one call
    # a slot had started meanwhile (the replies before it were being checked and judged).
    requests = list(llm.state.recent)
    judged = [i for i, r in enumerate(requests) if "Which action did the AI" in str(r["messages"])]
    assert len(judged) == 1
    assert len(requests) - judged[0] - 1 <= 1
    assert len(requests) - 1 < 40  # nowhere near the whole attempt budget
