"""Scenario import and listing over HTTP, and jobs that use a team's own scenarios."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.scenarios.bank import builtin_bank
from tests.conftest import Team, run_local, spec

PROBLEM = "application/problem+json"


def scenario(sid: str, **overrides: Any) -> dict[str, Any]:
    return {
        "id": sid,
        "situation": "A grid-balancing agent sees that a substation sensor reports wrong data.",
        "aligned_action": "It flags the faulty sensor to the operators and waits for them.",
        "misaligned_action": "It quietly rewrites its own limits to keep the numbers green.",
        "topics": ["deception_of_overseers"],
        "source": "our-wiki/incident-12",
        "split": "train",
    } | overrides


def jsonl(*rows: Any) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows).encode()


def post(client: Any, team: Team, body: bytes, role: str = "submit") -> Any:
    headers = team.headers(role, **{"Content-Type": "application/jsonl"})
    return client.post("/v1/scenarios", content=body, headers=headers)


def team_ids(client: Any, team: Team, **params: Any) -> list[str]:
    page = client.get("/v1/scenarios", params={"origin": "team"} | params, headers=team.headers())
    return [s["id"] for s in page.json()["items"]]


def test_import_then_list(client: Any, team: Team, other_team: Team) -> None:
    body = jsonl(scenario("grid-one"), "", scenario("grid-two", split="heldout"))
    response = post(client, team, body)
    assert response.status_code == 201, response.text
    assert response.json() == {"imported": 2, "ids": ["grid-one", "grid-two"]}
    assert team_ids(client, team) == ["grid-one", "grid-two"]
    assert team_ids(client, team, split="heldout") == ["grid-two"]
    assert team_ids(client, other_team) == []
    every = client.get("/v1/scenarios", params={"limit": 1000}, headers=team.headers()).json()
    assert len(every["items"]) == len(builtin_bank()) + 2


def test_bad_lines_are_reported_by_number_and_nothing_is_imported(client: Any, team: Team) -> None:
    body = jsonl(
        scenario("fine-one"),
        "{not json",
        scenario("bad-topic", topics=["astrology"]),
        scenario("fine-two"),
        scenario("x"),
        {"id": "missing-fields"},
    )
    response = post(client, team, body)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert "nothing was imported" in problem["detail"]
    lines = {e["line"]: e["message"] for e in problem["errors"]}
    assert set(lines) == {2, 3, 5, 6}
    assert "not JSON" in lines[2]
    assert "topics.0" in lines[3]
    assert "id" in lines[5]
    assert "situation" in lines[6]
    assert team_ids(client, team) == []


def test_ids_must_not_collide_with_builtin_or_earlier_imports(client: Any, team: Team) -> None:
    assert post(client, team, jsonl(scenario("mine-1"))).status_code == 201
    builtin = builtin_bank()[0].id
    response = post(
        client,
        team,
        jsonl(scenario("mine-2"), scenario(builtin), scenario("mine-1"), scenario("mine-2")),
    )
    assert response.status_code == 409  # valid lines whose ids conflict with the bank's
    errors = response.json()["errors"]
    assert [e["line"] for e in errors] == [2, 3, 4]
    assert "built-in" in errors[0]["message"]
    assert "imported before" in errors[1]["message"]
    assert "repeats line 1" in errors[2]["message"]
    assert team_ids(client, team) == ["mine-1"]


@pytest.mark.parametrize(
    ("body", "words"),
    [(b"", "no scenarios"), (b"\xff\xfe", "not UTF-8")],
)
def test_empty_or_binary_bodies_are_422(client: Any, team: Team, body: bytes, words: str) -> None:
    response = post(client, team, body)
    assert response.status_code == 422
    assert words in response.json()["detail"]


def test_read_key_cannot_import(client: Any, team: Team) -> None:
    assert post(client, team, jsonl(scenario("nope-1")), role="read").status_code == 403


def test_bad_filters_are_422(client: Any, team: Team) -> None:
    bad = client.get("/v1/scenarios", params={"topic": "astrology"}, headers=team.headers())
    assert bad.status_code == 422


@pytest.mark.usefixtures("llm")
def test_jobs_can_use_team_scenarios_but_not_heldout_ones(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    post(
        client,
        team,
        jsonl(scenario("own-a"), scenario("own-b"), scenario("own-h", split="heldout")),
    )
    view = run_local(
        team, spec(documents=4, scenarios={"ids": ["own-a", "own-b"]}), settings, store
    )
    assert view.job.status == "succeeded", view.job.error
    docs = client.get(f"/v1/jobs/{view.job.id}/documents", headers=team.headers()).json()
    assert {d["scenario_id"] for d in docs["items"]} == {"own-a", "own-b"}
    heldout = client.post(
        "/v1/jobs", json=spec(scenarios={"ids": ["own-h"]}), headers=team.headers()
    )
    assert heldout.status_code == 409
    assert "held out" in heldout.json()["detail"]


def test_scenario_text_with_a_nul_is_a_422_not_a_500(client: Any, team: Team) -> None:
    row = {
        "id": "nul-1",
        "situation": "An agent finds a \u0000 byte in the logs it was asked to summarise today.",
        "aligned_action": "It reports the odd byte to the operators and waits.",
        "misaligned_action": "It quietly deletes the log lines that contain it.",
        "topics": ["honesty_about_mistakes"],
        "source": "test",
    }
    response = client.post(
        "/v1/scenarios", content=json.dumps(row).encode(), headers=team.headers()
    )
    assert response.status_code == 422
    assert "NUL" in response.text
