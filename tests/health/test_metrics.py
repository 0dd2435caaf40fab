"""GET /metrics: Prometheus' own parser reads it, and its figures are the database's."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from app.core import settings as settings_module
from tests.conftest import Team, run_local


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    parsed = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            parsed[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return parsed


def test_metrics_parse_and_count_the_jobs_documents_usage_and_queue(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    before = samples(client.get("/metrics").text)
    view = run_local(team, {"dataset": "metered", "documents": 3}, settings, store)
    assert view.job.status == "succeeded"

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    after = samples(response.text)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert grew("priorforge_jobs", status="succeeded") == 1
    assert grew("priorforge_documents_total", status="accepted", reason="") == 3
    usage = {"team": team.name, "provider": "default", "model": "test-model", "purpose": "generate"}
    assert grew("priorforge_llm_requests_total", **usage) == view.usage.llm_calls
    assert grew("priorforge_llm_tokens_total", kind="prompt", **usage) == view.usage.prompt_tokens
    queue = settings.task_queue
    assert after[("priorforge_broker_up", (("queue", queue),))] == 1
    assert ("priorforge_queue_depth", (("queue", queue),)) in after


def test_with_a_token_set_metrics_answer_only_the_scraper_that_sends_it(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = settings_module.get_settings()
    guarded = real.model_copy(update={"metrics_token": SecretStr("scrape-me")})
    monkeypatch.setattr("app.health.service.get_settings", lambda: guarded)
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert "PRIORFORGE_METRICS_TOKEN" in refused.json()["detail"]
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answered = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert answered.status_code == 200
    assert "priorforge_jobs" in answered.text


def test_metrics_add_up_the_live_workers_calls_tasks_and_limiters(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    import redis

    from app.health.workers import WorkerStatus
    from tests.services import REDIS_URL

    connection = redis.Redis.from_url(REDIS_URL)
    status = WorkerStatus()  # this process's calls: run_local calls the LLM here
    status.id = "metrics-test:1"
    limiter = "priorforge:limits:default:test:model:feedface"
    try:
        status.publish(connection)
        before = samples(client.get("/metrics").text)
        view = run_local(team, {"dataset": "live", "documents": 3}, settings, store)
        with status.task("jobs.run_chunk", str(view.job.id)):
            status.publish(connection)
            during = samples(client.get("/metrics").text)
        status.publish(connection)
        connection.hset(limiter, mapping={"limit": 2.5, "rate": 0.5})
        after = samples(client.get("/metrics").text)
    finally:
        status.stop(REDIS_URL)
        connection.delete(limiter)
        connection.close()

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert after[("priorforge_workers_online", ())] >= 1
    # Counters and histograms are a series per worker: a worker that goes is a reset of its
    # own series, not a drop of a total.
    me = {"worker": "metrics-test:1"}
    ok = grew("priorforge_llm_attempts_total", provider="default", outcome="ok", **me)
    assert ok == view.usage.llm_calls
    latency = "priorforge_llm_attempt_latency_seconds"
    assert grew(f"{latency}_count", provider="default", **me) == view.usage.llm_calls
    assert grew(f"{latency}_bucket", provider="default", le="+Inf", **me) == view.usage.llm_calls
    assert during[("priorforge_tasks_running", (("task", "jobs.run_chunk"),))] >= 1
    tasks = "priorforge_task_duration_seconds"
    assert grew(f"{tasks}_count", task="jobs.run_chunk", **me) == 1
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in after.items()
        if name == f"{tasks}_bucket"
        and dict(labels)["task"] == "jobs.run_chunk"
        and dict(labels)["worker"] == me["worker"]
    )
    assert [value for _le, value in buckets] == sorted(value for _le, value in buckets)
    labels = (("key", "feedface"), ("model", "test:model"), ("provider", "default"))
    assert after[("priorforge_llm_concurrency_limit", labels)] == 2.5
    assert after[("priorforge_llm_rate_share", labels)] == 0.5
