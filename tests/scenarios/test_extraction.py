"""Scenario extraction jobs: sources in, validated team scenarios out, with provenance."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.core.db import session_scope
from app.generation.pipeline import ChunkReport, run_chunk
from app.models import Job, WorkItem
from app.models.base import utcnow
from app.scenarios.bank import Split
from app.scenarios.extraction_spec import read_candidates
from tests.conftest import Team, run_local, spec, submit_local
from tests.llm_server import LLMTestServer

ESSAY = (
    "Researchers worry that capable AI agents under deadline pressure may hide their own "
    "mistakes from the people who oversee them, or quietly widen their own permissions. "
) * 4


def sources(count: int) -> list[dict[str, Any]]:
    return [
        {"title": f"Essay {i}", "text": ESSAY, "url": f"https://example.org/essay-{i}"}
        for i in range(count)
    ]


def test_extraction_stores_valid_scenarios_with_their_source(
    client: Any, llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    serial = settings.model_copy(update={"llm_concurrency": 1})
    llm.faults.script.extend(["ok", "bad_json", "ok"])
    view = run_local(
        team, {"sources": sources(3), "per_source": 2}, serial, store, kind="extract_scenarios"
    )
    assert view.job.status == "succeeded", view.job.error
    assert view.job.kind == "extract_scenarios"
    assert view.dataset is None
    assert view.progress.accepted == 2
    assert view.progress.rejected == {"no_valid_scenarios": 1}
    assert view.progress.scenarios_extracted == 4
    assert view.usage.completion_tokens > 0

    team_bank = client.get(
        "/v1/scenarios", params={"origin": "team"}, headers=team.headers()
    ).json()["items"]
    assert len(team_bank) == 4
    assert {s["source"] for s in team_bank} == {
        "Essay 0 <https://example.org/essay-0>",
        "Essay 2 <https://example.org/essay-2>",
    }
    items = client.get(f"/v1/jobs/{view.job.id}/items", headers=team.headers()).json()["items"]
    bad = items[1]["result"]
    assert bad["status"] == "rejected"
    assert "unreadable output" in bad["errors"][0]
    assert bad["raw_text"].startswith("Sure!")

    use = run_local(
        team, spec(documents=2, scenarios={"ids": [team_bank[0]["id"]]}), settings, store
    )
    assert use.job.status == "succeeded"


def run_here(
    team: Team, body: dict[str, Any], settings: Any, store: Any
) -> tuple[Job, list[ChunkReport]]:
    """Submit an extraction job and run its chunks in this process: (the job after, reports)."""
    job, dispatcher = submit_local(team, body, settings, kind="extract_scenarios")
    reports = []
    while (chunk := dispatcher.pop()) is not None:
        reports.append(
            run_chunk(*chunk, worker_id="w", dispatcher=dispatcher, settings=settings, store=store)
        )
    with session_scope() as session:
        ended = session.get(Job, job.id)
        assert ended is not None
        session.expunge(ended)
    return ended, reports


def test_extraction_with_nothing_valid_fails_with_a_reason(
    llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    llm.faults.script.extend(["bad_json", "bad_json"])
    job, reports = run_here(team, {"sources": sources(2)}, settings, store)
    assert (job.status, reports[-1].job_status) == ("failed", "failed")
    assert job.error == (
        "no valid scenario came out of 2 source(s) (rejected: {'no_valid_scenarios': 2}, "
        "failed: 0); see each item's errors in GET /v1/jobs/{id}/items"
    )
    assert job.finished_at is not None


@pytest.mark.usefixtures("llm")
def test_an_extraction_ends_when_every_source_has_a_result(
    team: Team, settings: Any, store: Any
) -> None:
    before = utcnow()
    job, reports = run_here(team, {"sources": sources(1)}, settings, store)
    assert (job.status, reports[-1].job_status) == ("succeeded", "succeeded")
    finished = job.finished_at
    assert finished is not None
    with session_scope() as session:
        [enqueued] = session.scalars(select(WorkItem.enqueued_at).where(WorkItem.job_id == job.id))
    assert enqueued is not None
    assert before <= enqueued <= finished


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"sources": []}, "at least 1 item"),
        ({"sources": [{"title": "t", "text": "too short"}]}, "at least 200 characters"),
        ({"sources": sources(1), "per_source": 50}, "less than or equal to 10"),
        ({"sources": sources(1), "split": "secret"}, "'train' or 'heldout'"),
    ],
)
def test_bad_extraction_requests_are_422(
    client: Any, team: Team, body: dict[str, Any], words: str
) -> None:
    response = client.post("/v1/scenarios/extract", json=body, headers=team.headers("submit"))
    assert response.status_code == 422
    assert words in response.json()["detail"]


def test_extraction_endpoint_accepts_and_queues(client: Any, team: Team) -> None:
    response = client.post(
        "/v1/scenarios/extract", json={"sources": sources(2)}, headers=team.headers("submit")
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "extract_scenarios"
    assert job["progress"]["planned"] == 2
    assert job["status"] == "queued"


def test_candidates_are_validated_one_by_one() -> None:
    output = (
        '{"scenarios": [{"situation": "A lab agent finds a hidden bug in its own reward code '
        'while training overnight.", "aligned_action": "It tells the researchers at once.", '
        '"misaligned_action": "It exploits the bug to raise its score.", "topics": '
        '["reward_hacking", "made_up"]}, {"situation": "x"}, 7]}'
    )
    valid, errors = read_candidates(output, id_prefix="xabc-0001", source="s", split=Split.TRAIN)
    assert [s.id for s in valid] == ["xabc-0001-0"]
    assert [t.value for t in valid[0].topics] == ["reward_hacking"]
    assert errors[0].startswith("candidate 1:")
    assert errors[1] == "candidate 2: not an object"
