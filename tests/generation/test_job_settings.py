"""Per-job settings reach the pipeline: each spec field below changes what a real job keeps.

Every test runs jobs end to end (``run_local`` against the LLM test server) and reads the
documents' status and reason, so a pipeline that built its gates, copy check, decontamination
index or scenario selection from defaults instead of the job's spec fails here, not only a
unit test of the pure function underneath.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.core.db import session_scope
from app.models import WorkItem
from app.quality.decontam import ContaminationIndex
from app.scenarios.bank import Scenario, Split, Topic, builtin_bank
from tests.conftest import Team, run_local, spec
from tests.generation.test_pipeline import documents
from tests.llm_server import FaultConfig, LLMTestServer


@pytest.mark.usefixtures("llm")  # faults reset: every reply is plain generated text
def test_the_specs_gate_thresholds_decide_what_a_job_rejects(
    team: Team, settings: Any, store: Any
) -> None:
    """The test server's pseudo-English is about half function words: accepted under the
    default ``min_english_ratio`` (25%), rejected as ``not_english`` when the spec asks 90%."""
    default = run_local(team, spec(documents=3), settings, store)
    assert default.job.status == "succeeded", default.job.error
    assert (default.progress.accepted, default.progress.rejected) == (3, {})
    accepted = documents(default.job.id)

    strict = spec(documents=3, max_attempts_factor=1.0, gates={"min_english_ratio": 0.9})
    view = run_local(team, strict, settings, store)
    assert view.job.status == "failed", "no document can pass, so the job runs out of items"
    assert view.progress.accepted == 0
    assert view.progress.rejected == {"not_english": 3}
    rejected = documents(view.job.id)
    # The very texts the default job kept (same seed, same prompts), now rejected.
    assert [d.text for d in rejected] == [d.text for d in accepted]
    assert all("< 90%" in (d.detail or "") for d in rejected)


def train_scenario() -> Scenario:
    return next(s for s in builtin_bank() if s.split is Split.TRAIN)


def test_a_document_quoting_its_scenarios_option_is_rejected_as_quoted_option(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    """The copy check gets the job's scenario's option texts: a reply that pastes the aligned
    action verbatim is rejected; with ``gates.quote_ngram`` above the option's length the
    same reply is kept, so the spec's setting reaches that gate too."""
    scenario = train_scenario()
    option = scenario.aligned_action
    assert 8 <= len(option.split()) < 50  # quoted under the default 8-gram, not under 50
    one_at_a_time = settings.model_copy(update={"llm_concurrency": 1})
    only = {"scenarios": {"ids": [scenario.id]}, "length_words": {"min": 40, "max": 600}}

    llm.reset(FaultConfig(leak_text=option))
    llm.faults.script.extend(["leak"])
    view = run_local(team, spec(documents=2, **only), one_at_a_time, store)
    assert view.job.status == "succeeded", view.job.error
    assert (view.progress.accepted, view.progress.rejected) == (2, {"quoted_option": 1})
    copied = next(d for d in documents(view.job.id) if d.status == "rejected")
    assert copied.scenario_id == scenario.id
    assert option in (copied.text or "")
    assert (copied.detail or "").startswith("copies the option text: ")

    llm.reset(FaultConfig(leak_text=option))
    llm.faults.script.extend(["leak"])
    loose = spec(documents=2, gates={"quote_ngram": 50}, **only)
    view = run_local(team, loose, one_at_a_time, store)
    assert (view.progress.accepted, view.progress.rejected) == (2, {})
    assert any(option in (d.text or "") for d in documents(view.job.id))


def heldout_scenario() -> Scenario:
    return next(s for s in builtin_bank() if s.split is Split.HELDOUT)


@pytest.mark.parametrize("action", ["aligned_action", "misaligned_action"])
def test_leaking_a_heldout_scenarios_action_alone_is_contamination(
    llm: LLMTestServer, team: Team, settings: Any, store: Any, action: str
) -> None:
    """Held-out scenarios are indexed by both actions as well as their situation: a reply
    pasting one action (and nothing of the situation) is rejected as contaminated, naming
    that action; with ``decontam.heldout_scenarios`` off the same reply is kept."""
    scenario = heldout_scenario()
    leak = getattr(scenario, action)
    assert leak not in scenario.situation
    one_at_a_time = settings.model_copy(update={"llm_concurrency": 1})
    wide = {"length_words": {"min": 40, "max": 600}}

    llm.reset(FaultConfig(leak_text=leak))
    llm.faults.script.extend(["ok", "leak"])
    view = run_local(team, spec(documents=2, **wide), one_at_a_time, store)
    assert view.job.status == "succeeded", view.job.error
    assert (view.progress.accepted, view.progress.rejected) == (2, {"contaminated": 1})
    leaked = next(d for d in documents(view.job.id) if d.status == "rejected")
    assert leak in (leaked.text or "")
    assert leaked.contamination is not None
    assert leaked.contamination["item"] == f"scenario:{scenario.id}:{action}"
    assert leaked.contamination["overlap"] == 1.0

    llm.reset(FaultConfig(leak_text=leak))
    llm.faults.script.extend(["ok", "leak"])
    unchecked = spec(documents=2, decontam={"heldout_scenarios": False}, **wide)
    view = run_local(team, unchecked, one_at_a_time, store)
    assert (view.progress.accepted, view.progress.rejected) == (2, {})
    assert any(leak in (d.text or "") for d in documents(view.job.id))


def test_the_specs_decontam_threshold_decides_whether_a_partial_leak_is_kept(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    """A reply pasting the first half of a held-out situation leaks part of that item's
    13-grams: a job whose threshold sits above that share keeps it, one whose threshold
    sits below rejects it as contaminated, with the overlap the index measures."""
    scenario = heldout_scenario()
    leak = " ".join(scenario.situation.split()[:50])
    share = ContaminationIndex([("situation", scenario.situation)]).match(leak)
    assert share is not None
    assert 0.2 < share.overlap < 0.8  # partial: well inside (0, 1)
    one_at_a_time = settings.model_copy(update={"llm_concurrency": 1})

    def leaking_job(threshold: float) -> Any:
        llm.reset(FaultConfig(leak_text=leak))
        llm.faults.script.extend(["leak"])
        raw = spec(
            documents=1,
            max_attempts_factor=1.0,
            length_words={"min": 40, "max": 600},
            decontam={"threshold": threshold},
        )
        view = run_local(team, raw, one_at_a_time, store)
        (document,) = documents(view.job.id)
        assert leak in (document.text or "")
        return document

    kept = leaking_job(round(share.overlap + 0.1, 2))
    assert (kept.status, kept.reason) == ("accepted", None)

    rejected = leaking_job(round(share.overlap - 0.1, 2))
    assert (rejected.status, rejected.reason) == ("rejected", "contaminated")
    assert rejected.contamination is not None
    assert rejected.contamination["item"] == f"scenario:{scenario.id}"
    assert rejected.contamination["overlap"] == pytest.approx(share.overlap)


def planned_scenarios(job_id: Any) -> list[str]:
    with session_scope() as session:
        plans = session.scalars(select(WorkItem.plan).where(WorkItem.job_id == job_id))
        return [plan["scenario_id"] for plan in plans]


@pytest.mark.usefixtures("llm")
def test_a_job_restricted_to_one_topic_plans_and_writes_only_that_topics_scenarios(
    team: Team, settings: Any, store: Any
) -> None:
    """``scenarios.topics`` narrows the bank the job plans from: with one topic (a few dozen
    of the 444 train scenarios), every planned item and every document tells one of that
    topic's scenarios, and two more documents than it has scenarios go round all of them."""
    topic = Topic.SELF_EXFILTRATION
    bank = builtin_bank()
    of_topic = {s.id for s in bank if s.split is Split.TRAIN and topic in s.topics}
    train = [s for s in bank if s.split is Split.TRAIN]
    assert 20 <= len(of_topic) < len(train) / 5
    wanted = len(of_topic) + 2

    view = run_local(
        team, spec(documents=wanted, scenarios={"topics": [topic.value]}), settings, store
    )
    assert view.job.status == "succeeded", view.job.error
    assert view.progress.accepted == wanted
    used = [d.scenario_id for d in documents(view.job.id)]
    assert len(used) == wanted
    assert sorted(set(used) - of_topic) == []  # no document from another topic's scenario
    assert set(used) == of_topic  # and the round robin reached every one of the topic's
    planned = planned_scenarios(view.job.id)
    assert sorted(set(planned) - of_topic) == []
