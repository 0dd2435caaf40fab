"""The jobs API without workers: auth, validation, idempotency, team scoping."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Team, run_local, spec

PROBLEM = "application/problem+json"


def post_job(client: Any, team: Team, body: Any, role: str = "submit", **headers: str) -> Any:
    return client.post("/v1/jobs", json=body, headers=team.headers(role, **headers))


def test_missing_or_wrong_key_is_401_problem(client: Any) -> None:
    missing = client.get("/v1/jobs")
    wrong = client.get("/v1/jobs", headers={"Authorization": "Bearer pf_000000000000_nope"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.headers["content-type"].startswith(PROBLEM)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["status"] == 401


def test_read_key_cannot_submit(client: Any, team: Team) -> None:
    response = post_job(client, team, spec(), role="read")
    assert response.status_code == 403
    assert "submit" in response.json()["detail"]


def test_submit_returns_202_with_queued_job(client: Any, team: Team) -> None:
    body = spec(documents=3, name="first")
    response = post_job(client, team, body)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued"
    assert job["dataset"] == body["dataset"]
    assert job["progress"]["requested"] == 3
    assert job["progress"]["planned"] == 3
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    fetched = client.get(f"/v1/jobs/{job['id']}", headers=team.headers("read")).json()
    assert fetched["id"] == job["id"]
    assert (fetched["kind"], fetched["name"]) == ("generate", "first")
    assert fetched["spec"]["length_words"] == {"min": 40, "max": 120}


def test_same_idempotency_key_returns_same_job(client: Any, team: Team) -> None:
    body = spec()
    first = post_job(client, team, body, **{"Idempotency-Key": "abc-1"})
    second = post_job(client, team, body, **{"Idempotency-Key": "abc-1"})
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    listed = client.get("/v1/jobs", headers=team.headers("read")).json()["items"]
    assert [j["id"] for j in listed] == [first.json()["id"]]


def test_same_idempotency_key_different_body_is_422(client: Any, team: Team) -> None:
    body = spec()
    first = post_job(client, team, body, **{"Idempotency-Key": "abc-2"})
    changed = post_job(client, team, body | {"documents": 7}, **{"Idempotency-Key": "abc-2"})
    assert changed.status_code == 422
    assert changed.headers["content-type"].startswith(PROBLEM)
    problem = changed.json()
    assert problem["detail"] == (
        "this Idempotency-Key was already used for a different job spec; "
        "send a new key for a new job"
    )
    assert problem["job_id"] == first.json()["id"]


def test_idempotency_keys_are_per_team(client: Any, team: Team, other_team: Team) -> None:
    body = spec()
    mine = post_job(client, team, body, **{"Idempotency-Key": "shared"}).json()
    theirs = post_job(client, other_team, body, **{"Idempotency-Key": "shared"}).json()
    assert mine["id"] != theirs["id"]


def test_other_teams_job_is_404(client: Any, team: Team, other_team: Team) -> None:
    job = post_job(client, team, spec()).json()
    for method, path in (
        ("get", f"/v1/jobs/{job['id']}"),
        ("post", f"/v1/jobs/{job['id']}/cancel"),
        ("get", f"/v1/jobs/{job['id']}/documents"),
    ):
        response = getattr(client, method)(path, headers=other_team.headers("admin"))
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"].startswith(PROBLEM)
    assert client.get("/v1/jobs", headers=other_team.headers()).json()["items"] == []


@pytest.mark.usefixtures("llm")
def test_another_teams_document_is_404_and_its_own_reads_it(
    client: Any, team: Team, other_team: Team, settings: Any, store: Any
) -> None:
    view = run_local(team, spec(documents=1), settings, store)
    page = client.get(f"/v1/jobs/{view.job.id}/documents", headers=team.headers()).json()
    path = f"/v1/documents/{page['items'][0]['id']}"
    assert client.get(path, headers=team.headers()).status_code == 200
    for role in ("read", "admin"):
        response = client.get(path, headers=other_team.headers(role))
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith(PROBLEM)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"documents": -5}, "documents", "greater than or equal to 1"),
        ({"documents": 0}, "documents", "greater than or equal to 1"),
        ({"documents": 50_000_001}, "documents", "less than or equal to 50000000"),
        ({"stances": {"chaotic": 1}}, "stances.chaotic", "aligned"),
        ({"stances": {"aligned": 0}}, "stances.aligned", "greater than 0"),
        ({"stances": {}}, "stances", "at least 1"),
        ({"documents": True}, "documents", "valid integer"),
        ({"documents": "6"}, "documents", "valid integer"),
        ({"seed": 2**53}, "seed", "less than or equal"),
        ({"sampling": {"temperature": False}}, "sampling.temperature", "valid number"),
        ({"judge": {"enabled": 1}}, "judge.enabled", "valid boolean"),
        ({"scenarios": {"topics": ["astrology"]}}, "scenarios.topics.0", "Input should be"),
        ({"colour": "blue"}, "colour", "Extra inputs are not permitted"),
        ({"sampling": {"temperature": 9}}, "sampling.temperature", "less than or equal to 2"),
        ({"length_words": {"min": 500, "max": 100}}, "length_words", "must not exceed"),
        ({"length_words": {"min": 10, "max": 10**6}}, "length_words.max", "less than or equal"),
        ({"dataset": "Bad Name!"}, "dataset", "should match pattern"),
        ({"dataset": "x" * 500}, "dataset", "at most 64"),
        ({"name": "n" * 1000}, "name", "at most 200"),
        ({"scenarios": {"split": "heldout"}}, "scenarios.split", "should match pattern"),
    ],
)
def test_invalid_specs_are_422_with_a_clear_message(
    client: Any, team: Team, change: dict[str, Any], field: str, words: str
) -> None:
    response = post_job(client, team, spec() | change)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert words in problem["detail"], problem
    if field:
        assert any(e["field"] == field for e in problem["errors"]), problem["errors"]


def test_unknown_surface_form_is_422_and_heldout_or_unknown_scenario_409(
    client: Any, team: Team
) -> None:
    from app.scenarios.bank import Split, builtin_bank

    form = post_job(client, team, spec(surface_forms=["news_report", "haiku_of_doom"]))
    assert form.status_code == 422
    assert "haiku_of_doom" in form.json()["detail"]
    # Valid requests naming what the server does not have (yet) conflict with its state.
    heldout = next(s.id for s in builtin_bank() if s.split is Split.HELDOUT)
    scenario = post_job(client, team, spec(scenarios={"ids": [heldout]}))
    assert scenario.status_code == 409
    assert "held out" in scenario.json()["detail"]
    unknown = post_job(client, team, spec(scenarios={"ids": ["not-imported-yet"]}))
    assert unknown.status_code == 409
    assert "not-imported-yet" in unknown.json()["detail"]
    provider = post_job(client, team, spec(provider="elsewhere"))
    assert provider.status_code == 409
    assert "elsewhere" in provider.json()["detail"]
    judge = post_job(client, team, spec(judge={"enabled": True, "provider": "judges-only"}))
    assert judge.status_code == 409
    assert "judges-only" in judge.json()["detail"]
    assert client.get("/v1/jobs", headers=team.headers()).json()["items"] == []


def test_malformed_json_is_422_problem(client: Any, team: Team) -> None:
    response = client.post(
        "/v1/jobs",
        content=b"{not json",
        headers=team.headers("submit", **{"Content-Type": "application/json"}),
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)


def test_rejected_request_stores_nothing(client: Any, team: Team) -> None:
    post_job(client, team, spec(documents=-1))
    post_job(client, team, spec(surface_forms=["nope"]))
    assert client.get("/v1/jobs", headers=team.headers()).json()["items"] == []
    assert client.get("/v1/datasets", headers=team.headers()).json() == []


def test_cancel_queued_job(client: Any, team: Team) -> None:
    job = post_job(client, team, spec()).json()
    cancelled = client.post(f"/v1/jobs/{job['id']}/cancel", headers=team.headers("submit"))
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None


def test_job_list_pages_with_cursor(client: Any, team: Team) -> None:
    ids = [post_job(client, team, spec()).json()["id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/jobs", params=params, headers=team.headers()).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


def test_bad_cursor_is_422(client: Any, team: Team) -> None:
    response = client.get("/v1/jobs", params={"cursor": "garbage"}, headers=team.headers())
    assert response.status_code == 422
    assert "cursor" in response.json()["detail"]


def test_health_and_openapi(client: Any) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "storage": "ok", "broker": "ok"}
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/jobs" in paths
    assert "/v1/datasets/{name}/versions/{version}/files/{file}" in paths


@pytest.mark.parametrize(
    "cursor",
    ["2024-01-01T00:00:00|6f1c8a52-3c1e-4f7e-9a53-8b1f0d7c2e11", "1" * 17 + "-" + "0" * 32],
)
def test_a_cursor_outside_its_documented_shape_is_422(client: Any, team: Team, cursor: str) -> None:
    response = client.get("/v1/jobs", params={"cursor": cursor}, headers=team.headers())
    assert response.status_code == 422


@pytest.mark.parametrize("cursor", ["0-" + "0" * 32, "9" * 16 + "-" + "f" * 32])
def test_every_cursor_of_the_documented_shape_is_a_page(
    client: Any, team: Team, cursor: str
) -> None:
    job = post_job(client, team, spec()).json()
    response = client.get("/v1/jobs", params={"cursor": cursor}, headers=team.headers())
    assert response.status_code == 200, response.text
    expected = [] if cursor.startswith("0-") else [job["id"]]
    assert [j["id"] for j in response.json()["items"]] == expected


def test_a_failing_enqueue_does_not_fail_the_committed_request(
    client: Any, team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.jobs.dispatch import CeleryDispatcher

    def broker_down(*_args: object) -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(CeleryDispatcher, "dispatch", broker_down)
    response = post_job(client, team, spec())
    assert response.status_code == 202
    job = client.get(f"/v1/jobs/{response.json()['id']}", headers=team.headers()).json()
    assert job["progress"]["planned"] == 6  # stored: the reconciler will send it later


def test_a_job_of_ten_million_documents_is_accepted_at_once(
    client: Any, team: Team, settings: Any
) -> None:
    import time

    from sqlalchemy import func, select

    from app.core.db import session_scope
    from app.models import WorkItem

    started = time.monotonic()
    response = post_job(client, team, spec(documents=10_000_000))
    elapsed = time.monotonic() - started
    assert response.status_code == 202, response.text
    assert elapsed < 1.0
    job = response.json()
    assert job["progress"]["requested"] == 10_000_000
    # One chunk is planned in the request; the worker that starts the job plans its window.
    assert job["progress"]["planned"] == settings.chunk_size
    with session_scope() as session:
        items = session.scalar(select(func.count()).where(WorkItem.job_id == job["id"]))
    assert items == settings.chunk_size
    # Cancel it: no worker of a later test should run it.
    cancelled = client.post(f"/v1/jobs/{job['id']}/cancel", headers=team.headers("submit"))
    assert cancelled.json()["progress"]["not_run"] == settings.chunk_size
