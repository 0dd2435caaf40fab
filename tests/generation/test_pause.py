"""A team's paused provider: its chunks make no call and give their items back; another
team's calls go on; resumed, the items run."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.core.db import session_scope
from app.llm import pause
from app.llm.provider import redis_url
from app.models import WorkItem
from app.models.base import utcnow
from tests.conftest import Team, run_first_chunk, run_local, spec
from tests.llm_server import LLMTestServer


def test_a_paused_provider_gets_no_call_from_the_team_and_its_items_wait(
    llm: LLMTestServer, team: Team, other_team: Team, settings: Any, store: Any
) -> None:
    url = redis_url(settings)
    assert url, "the tests run with the Redis broker"
    pause.pause(url, team.id, "default", "pf_test")
    try:
        assert pause.paused(url, team.id)["default"]["by"] == "pf_test"
        assert pause.paused(url, other_team.id) == {}
        before = llm.state.requests
        job, _dispatcher = run_first_chunk(team, spec(documents=3), settings, store)
        assert llm.state.requests == before  # not one call
        with session_scope() as session:
            items = session.execute(
                select(WorkItem.state, WorkItem.lease_owner, WorkItem.lease_expires_at).where(
                    WorkItem.job_id == job.id
                )
            ).all()
        assert items
        for state, owner, until in items:  # handed back, to run after the pause's wait
            assert (state, owner) == ("leased", "deferred")
            assert until is not None
            assert until > utcnow()
        # Another team's jobs on the same provider are not paused.
        theirs = run_local(other_team, spec(documents=2), settings, store)
        assert theirs.job.status == "succeeded"
    finally:
        pause.resume(url, team.id, "default")
    assert pause.paused(url, team.id) == {}
