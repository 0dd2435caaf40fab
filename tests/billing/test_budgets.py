"""Budgets stop jobs before their spend passes the cap, publish what was accepted, and usage
per job, team and day comes back over the API with the price version of every call."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.core.settings import get_settings
from app.models import Document
from tests.conftest import Team, run_local, spec

PRICED = {"llm_price_prompt_per_mtok": 2.5, "llm_price_completion_per_mtok": 10.0}
# Short documents and a small max_tokens: one item's worst case is about a tenth of a cent.
SMALL = {"documents": 200, "sampling": {"max_tokens": 400}, "max_attempts_factor": 1.5}


def _published(job_id: Any) -> tuple[int, int, set[str | None]]:
    """(accepted documents, those in a shard, their price versions)."""
    with session_scope() as session:
        accepted = session.scalar(
            select(func.count()).where(Document.job_id == job_id, Document.status == "accepted")
        )
        sharded = session.scalar(
            select(func.count()).where(
                Document.job_id == job_id,
                Document.status == "accepted",
                Document.shard_id.is_not(None),
            )
        )
        versions = set(
            session.scalars(select(Document.prices_version).where(Document.job_id == job_id))
        )
        worst = session.scalar(select(func.max(Document.cost_usd)).where(Document.job_id == job_id))
    return int(accepted or 0), int(sharded or 0), versions | {f"max:{worst}"}


@pytest.mark.usefixtures("llm")
def test_a_job_stops_at_its_budget_with_its_accepted_documents_published(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    priced = settings.model_copy(update=PRICED)
    cap = 0.05
    view = run_local(team, spec(**SMALL, budget_usd=cap), priced, store)
    job = view.job
    assert job.status == "stopped_budget", job.error
    assert "the job's budget is reached" in (job.error or "")
    reserve = job.reserve_usd_per_item
    assert 0 < reserve < cap / 4
    # Planning holds every item's worst case, so the spend stays under the cap; and the job
    # stopped only when less than one more worst case was left.
    assert cap - reserve < view.spent_usd <= cap
    assert view.reserved_usd == 0
    accepted, sharded, versions = _published(job.id)
    assert accepted == view.progress.accepted > 0
    assert sharded == accepted, "a budget-stopped job publishes its accepted documents"
    worst = max(float(v.split(":")[1]) for v in versions if v and v.startswith("max:"))
    assert worst <= reserve, "every item cost less than what it reserved"
    assert "settings" in versions  # the price table of PRIORFORGE_LLM_PRICE_*

    # The same spend, over the API: the job, and usage per job and model.
    read = client.get(f"/v1/jobs/{job.id}", headers=team.headers("read")).json()
    assert read["status"] == "stopped_budget"
    assert read["budget"]["budget_usd"] == cap
    assert read["budget"]["spent_usd"] == pytest.approx(view.spent_usd)
    usage = client.get(
        f"/v1/usage?group_by=job&group_by=model&job_id={job.id}", headers=team.headers("read")
    )
    assert usage.status_code == 200, usage.text
    body = usage.json()
    assert body["group_by"] == ["job", "model"]
    [row] = body["items"]
    assert row["job_id"] == str(job.id)
    assert (row["purpose"], row["provider"], row["prices_version"]) == (
        "generate",
        "default",
        "settings",
    )
    assert row["cost_usd"] == pytest.approx(view.spent_usd)
    assert row["calls"] == view.usage.llm_calls
    assert row["prompt_tokens"] == view.usage.prompt_tokens
    by_day = client.get("/v1/usage", headers=team.headers("read")).json()
    assert by_day["group_by"] == ["day"]
    assert by_day["total"]["cost_usd"] == pytest.approx(view.spent_usd)
    assert len(by_day["items"]) == 1


@pytest.mark.usefixtures("llm")
def test_the_team_budget_stops_its_jobs_and_refuses_new_ones_until_raised(
    client: Any, team: Team, other_team: Team, settings: Any, store: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    for name, value in PRICED.items():
        monkeypatch.setattr(get_settings(), name, value)
    priced = settings.model_copy(update=PRICED)
    forbidden = client.put(
        "/v1/budget", json={"monthly_budget_usd": 1}, headers=team.headers("submit")
    )
    assert forbidden.status_code == 403
    cap = 0.04
    put = client.put("/v1/budget", json={"monthly_budget_usd": cap}, headers=team.headers())
    assert put.status_code == 200, put.text
    assert put.json()["left_usd"] == cap

    view = run_local(team, spec(**SMALL), priced, store)
    assert view.job.status == "stopped_budget", view.job.error
    assert "the team's budget for 20" in (view.job.error or "")
    budget = client.get("/v1/budget", headers=team.headers("read")).json()
    assert budget["spent_usd"] == pytest.approx(view.spent_usd)
    assert cap - view.job.reserve_usd_per_item < budget["spent_usd"] <= cap
    assert budget["reserved_usd"] == 0

    # Nothing is left for one more item: a new job is refused, saying why and what to do.
    refused = client.post("/v1/jobs", json=spec(**SMALL), headers=team.headers("submit"))
    assert refused.status_code == 409, refused.text
    assert "is used up" in refused.json()["detail"]
    assert "PUT /v1/budget" in refused.json()["detail"]
    # Another team's budget is its own.
    assert client.get("/v1/budget", headers=other_team.headers("read")).json()["spent_usd"] == 0
    assert (
        client.post("/v1/jobs", json=spec(**SMALL), headers=other_team.headers("submit"))
    ).status_code == 202
    # Raised (here: removed), the team may submit again.
    assert (
        client.put("/v1/budget", json={"monthly_budget_usd": None}, headers=team.headers()).json()[
            "left_usd"
        ]
        is None
    )
    assert (
        client.post("/v1/jobs", json=spec(**SMALL), headers=team.headers("submit")).status_code
        == 202
    )


def test_a_budget_below_one_items_worst_case_is_refused(
    client: Any, team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in PRICED.items():
        monkeypatch.setattr(get_settings(), name, value)
    answer = client.post(
        "/v1/jobs", json=spec(**SMALL, budget_usd=0.0001), headers=team.headers("submit")
    )
    assert answer.status_code == 409, answer.text
    assert "cannot pay for one item" in answer.json()["detail"]
    assert answer.headers["content-type"] == "application/problem+json"
    bad = client.post("/v1/jobs", json=spec(budget_usd=-1), headers=team.headers("submit"))
    assert bad.status_code == 422
    backwards = client.get(
        "/v1/usage?since=2026-12-05&until=2026-12-01", headers=team.headers("read")
    )
    assert backwards.status_code == 422
    assert "before since" in backwards.json()["detail"]


def test_usage_days_are_written_as_dates(client: Any, team: Team) -> None:
    """``until=0`` would be a Unix timestamp to pydantic; the schema says YYYY-MM-DD."""
    for bad in ("0", "1733000000", "2026-1-5", "today"):
        answer = client.get(f"/v1/usage?until={bad}", headers=team.headers("read"))
        assert answer.status_code == 422, (bad, answer.text)
    good = client.get("/v1/usage?until=2000-01-31", headers=team.headers("read"))
    assert good.status_code == 200, good.text
    assert good.json()["since"] == "2000-01-01"  # the first of until's month
    assert good.json()["items"] == []
    assert good.json()["total"]["cost_usd"] == 0


def test_a_worker_that_loses_the_race_to_plan_does_not_read_it_as_the_budget_stopping(
    team: Team, settings: Any
) -> None:
    """Two workers top up one budget-capped job: the one whose compare-and-set fails plans
    nothing, but is not told the budget bound (which would stop the job as stopped_budget
    with the winner's items still pending)."""
    from app.generation.context import JobContext
    from app.jobs import service as jobs
    from app.models import Job
    from tests.conftest import submit_local

    priced = settings.model_copy(update=PRICED)
    job, dispatcher = submit_local(team, spec(**SMALL, budget_usd=0.1), priced)
    in_flight = job.planned_items  # the submission's first items, not yet run
    with session_scope() as session:
        mine = session.get(Job, job.id)
        assert mine is not None
        context = JobContext.for_job(mine, session)
        with session_scope() as other:
            theirs = other.get(Job, job.id)
            assert theirs is not None
            won = jobs._plan_more(
                other, theirs, context, 50, dispatcher, priced, in_flight=in_flight
            )
        lost = jobs._plan_more(session, mine, context, 50, dispatcher, priced, in_flight=in_flight)
    planned, binding = won
    assert 0 < planned < 50
    assert binding is not None  # the budget bound the winner
    assert binding.what == "the job's budget"
    assert lost == (0, None)
