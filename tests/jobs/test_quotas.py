"""A team's quotas on jobs: how many at once (429, Retry-After) and how big (409)."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.settings import get_settings
from tests.conftest import Team, spec


def test_jobs_at_once_and_documents_per_job_are_limited_per_team(
    client: Any, team: Team, other_team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "team_max_active_jobs", 2)
    monkeypatch.setattr(get_settings(), "team_max_documents_per_job", 500)

    def submit(who: Team, documents: int = 1, key: str | None = None) -> Any:
        headers = who.headers("submit") | ({"Idempotency-Key": key} if key else {})
        body = spec(dataset="quota", documents=documents)
        return client.post("/v1/jobs", json=body, headers=headers)

    big = submit(team, documents=501)
    assert big.status_code == 409
    assert "quota of 500 per job" in big.json()["detail"]
    first = submit(team, key="first")
    assert first.status_code == 202
    assert submit(team).status_code == 202
    third = submit(team)
    assert third.status_code == 429, third.text
    assert third.headers["retry-after"] == "30"
    assert third.headers["content-type"] == "application/problem+json"
    assert "2 jobs queued or running" in third.json()["detail"]
    # Replaying a job already accepted is not a new job: no quota applies.
    assert submit(team, key="first").json()["id"] == first.json()["id"]
    # Another team has its own quota.
    assert submit(other_team).status_code == 202
    # Once a job has ended, the team may submit again.
    client.post(f"/v1/jobs/{first.json()['id']}/cancel", headers=team.headers("submit"))
    assert submit(team).status_code == 202


def test_a_submission_holds_its_team_until_it_commits(team: Team, settings: Any) -> None:
    """Two submissions of one team cannot both count the same jobs: the first holds the team
    row until its transaction ends, so the second waits (here: gives up at once)."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from app.core.db import get_sessionmaker
    from app.jobs.service import check_quotas

    first, second = get_sessionmaker()(), get_sessionmaker()()
    try:
        check_quotas(first, team.principal, 1, settings)
        second.execute(text("SET LOCAL lock_timeout = '100ms'"))
        with pytest.raises(OperationalError, match="lock"):
            check_quotas(second, team.principal, 1, settings)
        second.rollback()
        first.rollback()  # the first one's transaction ends: the team is free again
        check_quotas(second, team.principal, 1, settings)
    finally:
        first.close()
        second.close()
