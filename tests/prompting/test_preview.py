"""Previews render exactly what a worker sends; the catalog is served."""

from __future__ import annotations

from typing import Any

from tests.conftest import Team, run_local, spec
from tests.llm_server import LLMTestServer


def test_preview_equals_what_the_worker_sends(
    client: Any, llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    job_spec = spec(
        documents=6,
        stances={"aligned": 1, "misaligned": 1},
        surface_forms=["news_report", "internal_chat_log", "faq"],
        reasoning_depth="deep",
        seed=11,
    )
    response = client.post(
        "/v1/prompts/preview", json={"spec": job_spec, "items": 6}, headers=team.headers("read")
    )
    assert response.status_code == 200, response.text
    previews = response.json()["items"]
    assert [p["index"] for p in previews] == list(range(6))

    llm.state.recent.clear()
    view = run_local(team, job_spec, settings, store)
    assert view.job.status == "succeeded"
    sent = {request["seed"]: request for request in llm.state.recent}
    for preview in previews:
        request = sent[preview["plan"]["sampling_seed"]]
        assert request["messages"] == preview["messages"]
        for mine, theirs in zip(preview["messages"], request["messages"], strict=True):
            assert mine["content"].encode() == theirs["content"].encode()
    docs = client.get(f"/v1/jobs/{view.job.id}/documents", headers=team.headers()).json()["items"]
    assert [d["prompt_sha256"] for d in docs] == [p["prompt_sha256"] for p in previews]


def test_preview_validates_the_spec(client: Any, team: Team) -> None:
    bad = client.post(
        "/v1/prompts/preview",
        json={"spec": spec(surface_forms=["sonnet_cycle"]), "items": 2},
        headers=team.headers(),
    )
    assert bad.status_code == 422
    assert "sonnet_cycle" in bad.json()["detail"]
    too_many = client.post(
        "/v1/prompts/preview", json={"spec": spec(), "items": 1000}, headers=team.headers()
    )
    assert too_many.status_code == 422


def test_surface_forms_endpoint(client: Any, team: Team) -> None:
    forms = client.get("/v1/surface-forms", headers=team.headers("read")).json()
    assert len(forms) >= 24
    news = next(f for f in forms if f["id"] == "news_report")
    assert news["has_title"] is True
    assert news["instructions"]
