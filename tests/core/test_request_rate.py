"""Each team's API request rate: a burst at once, then the rate; 429 with Retry-After past it,
shared by every API process through Redis."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from app.core.ratelimit import LocalRequestRate, SharedRequestRate
from app.core.settings import get_settings
from tests.conftest import Team


def test_gcra_admits_a_burst_then_one_request_per_interval() -> None:
    now = [100.0]
    quota = LocalRequestRate(per_minute=60, burst=5, clock=lambda: now[0])
    team, other = uuid.uuid4(), uuid.uuid4()
    assert [quota.admit(team) for _ in range(5)] == [0.0] * 5
    assert quota.admit(team) == pytest.approx(1.0)  # the 6th waits one interval
    assert quota.admit(other) == 0.0  # teams do not share a quota
    now[0] += 1.0
    assert quota.admit(team) == 0.0
    assert quota.admit(team) == pytest.approx(1.0)
    now[0] += 60.0  # idle: the whole burst again, never more
    assert sum(quota.admit(team) == 0.0 for _ in range(10)) == 5


def test_the_shared_quota_is_one_across_processes(settings: Any) -> None:
    """Two limiters (two API processes) on one Redis admit one burst between them."""
    first = SharedRequestRate(6, 4, settings.broker_url)
    second = SharedRequestRate(6, 4, settings.broker_url)
    team = uuid.uuid4()
    try:
        waits = [(first if i % 2 else second).admit(team) for i in range(8)]
    finally:
        first.close()
        second.close()
    assert waits[:4] == [0.0] * 4
    assert all(9.0 < wait <= 10.0 for wait in waits[4:]), waits  # 60/6 s per request


def test_an_unreachable_redis_admits_and_is_not_asked_again_at_once() -> None:
    unreachable = SharedRequestRate(6, 1, "redis://127.0.0.1:9/0")
    try:
        started = time.monotonic()
        assert unreachable.admit(uuid.uuid4()) == 0.0  # fails open: reads keep working
        first = time.monotonic() - started
        started = time.monotonic()
        assert [unreachable.admit(uuid.uuid4()) for _ in range(50)] == [0.0] * 50
        assert time.monotonic() - started < max(first, 0.05), "each request waited on Redis"
    finally:
        unreachable.close()


def test_a_team_past_its_rate_gets_429_with_retry_after(
    client: Any, team: Team, other_team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "team_max_requests_per_minute", 30)
    monkeypatch.setattr(get_settings(), "team_request_burst", 3)
    codes = [client.get("/v1/jobs", headers=team.headers("read")).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    refused = client.get("/v1/jobs", headers=team.headers("read"))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "2"  # 60/30 s to the next free slot
    assert "API request rate of 30 requests a minute" in refused.json()["detail"]
    # Every key of the team counts against the one quota; another team has its own.
    assert client.get("/v1/budget", headers=team.headers("admin")).status_code == 429
    assert client.get("/v1/jobs", headers=other_team.headers("read")).status_code == 200
    # Health checks carry no key and no quota.
    assert client.get("/healthz").status_code == 200
