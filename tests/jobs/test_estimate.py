"""A dry run says what a job will cost; the same job, run, lands within 25% of it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.core.db import session_scope
from app.core.settings import get_settings
from app.jobs import service as jobs
from app.jobs.spec import JobSpec
from tests.conftest import Team, run_local, spec
from tests.llm_server import LLMTestServer
from tests.test_cli import embedded_env

__all__ = ["embedded_env"]  # the fixture, used by name

PRICED = {"llm_price_prompt_per_mtok": 2.5, "llm_price_completion_per_mtok": 10.0}


@pytest.mark.usefixtures("llm")
def test_the_estimate_lands_within_a_quarter_of_the_real_cost(
    team: Team, settings: Any, store: Any
) -> None:
    priced = settings.model_copy(update=PRICED)
    raw = spec(documents=60, length_words={"min": 150, "max": 350})
    with session_scope() as session:
        before = jobs.estimate_job(session, team.principal, JobSpec.model_validate(raw), priced)
    assert before.documents == 60
    assert before.items >= 60
    assert before.cost_usd > 0
    assert before.worst_case_cost_usd >= before.cost_usd
    assert "no history on the model yet" in before.assumptions[0]
    view = run_local(team, raw, priced, store)
    assert view.job.status == "succeeded", view.job.error
    real = view.usage.cost_usd
    assert abs(before.cost_usd - real) <= 0.25 * real, (before, view.usage)
    # The next estimate for this team and model learns from the job that ran.
    with session_scope() as session:
        after = jobs.estimate_job(session, team.principal, JobSpec.model_validate(raw), priced)
    assert "this team's last" in after.assumptions[0]
    assert abs(after.cost_usd - real) <= abs(before.cost_usd - real) + 0.05 * real


def test_a_dry_run_over_http_stores_and_sends_nothing(
    client: Any, llm: LLMTestServer, team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in PRICED.items():
        monkeypatch.setattr(get_settings(), name, value)
    served = llm.state.served
    answer = client.post("/v1/jobs?dry_run=true", json=spec(documents=25), headers=team.headers())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) >= {"calls", "prompt_tokens", "completion_tokens", "cost_usd"}
    assert body["calls"] >= 25
    assert body["cost_usd"] > 0
    assert client.get("/v1/jobs", headers=team.headers("read")).json()["items"] == []
    assert llm.state.served == served
    bad = client.post("/v1/jobs?dry_run=true", json=spec(documents=0), headers=team.headers())
    assert bad.status_code == 422


def test_priorforge_estimate_prints_the_estimate(embedded_env: dict[str, str]) -> None:
    from tests.test_cli import priorforge

    env = embedded_env | {"PRIORFORGE_LLM_PRICE_COMPLETION_PER_MTOK": "10"}
    result = priorforge("estimate", "--documents", "30", "--json", env=env)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["documents"] == 30
    assert body["calls"] >= 30
    assert body["cost_usd"] > 0
    shown = priorforge("estimate", "--documents", "30", env=env)
    assert "30 documents: about" in shown.stdout
    assert "assuming acceptance 90%" in shown.stdout
