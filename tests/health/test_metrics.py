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
