"""Real Celery worker processes on Redis and Postgres: lifecycle, cancel, kill -9 recovery."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.health import workers as live
from app.models import Document, Shard, WorkItem
from tests.conftest import Team, spec, wait_for
from tests.llm_server import FaultConfig, LLMTestServer
from tests.services import REDIS_URL

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def job_state(client: Any, team: Team, job_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/jobs/{job_id}", headers=team.headers("read"))
    assert response.status_code == 200
    return dict(response.json())


def test_job_lifecycle_over_http_with_a_worker(
    client: Any, llm: LLMTestServer, team: Team, start_worker: Any
) -> None:
    llm.reset(FaultConfig(latency=0.05))
    worker = start_worker()
    created = client.post("/v1/jobs", json=spec(documents=25), headers=team.headers("submit"))
    assert created.status_code == 202
    job_id = created.json()["id"]
    seen = {created.json()["status"]}

    def finished() -> bool:
        state = job_state(client, team, job_id)
        seen.add(state["status"])
        return state["status"] in ("succeeded", "failed", "cancelled")

    wait_for(finished, timeout=90, interval=0.05)
    final = job_state(client, team, job_id)
    assert final["status"] == "succeeded", final
    assert {"queued", "running", "succeeded"} <= seen
    assert final["progress"]["accepted"] == 25
    assert final["usage"]["completion_tokens"] > 0
    assert final["started_at"]
    assert final["finished_at"]

    docs = client.get(f"/v1/jobs/{job_id}/documents", params={"limit": 10}, headers=team.headers())
    page = docs.json()
    assert len(page["items"]) == 10
    assert page["next_cursor"] == "9"
    one = client.get(f"/v1/documents/{page['items'][0]['id']}", headers=team.headers()).json()
    assert one["status"] == "accepted"
    assert one["text"]
    version = client.post(f"/v1/datasets/{final['dataset']}/versions", headers=team.headers())
    assert version.status_code == 201
    assert version.json()["records"] == 25
    # 25 documents took 25+ LLM calls; the worker's log does not name each one.
    assert "HTTP Request:" not in worker.log.read_text()

    # The worker published what it did: its calls and its chunks (the dashboard's workers
    # and providers pages and /metrics read this).
    def published() -> dict[str, Any] | None:
        mine = [s for s in live.read(REDIS_URL) if s["pid"] == worker.process.pid]
        return mine[0] if mine else None

    wait_for(
        lambda: (
            (found := published()) is not None
            and found["llm"].get("default", {}).get("attempts", {}).get("ok", 0)
            >= final["usage"]["llm_calls"]
        ),
        timeout=3 * live.PUBLISH_SECONDS,
    )
    status = published()
    assert status is not None
    assert sum(status["tasks"]["finished"]["jobs.run_chunk"]) >= 1
    assert status["tasks"]["running"] == []


def test_cancel_stops_a_running_job(
    client: Any, llm: LLMTestServer, team: Team, start_worker: Any
) -> None:
    llm.reset(FaultConfig(latency=0.3))
    start_worker(PRIORFORGE_LLM_CONCURRENCY="2")
    job_id = client.post("/v1/jobs", json=spec(documents=200), headers=team.headers()).json()["id"]
    wait_for(lambda: job_state(client, team, job_id)["progress"]["attempted"] >= 2, timeout=60)
    cancelled = client.post(f"/v1/jobs/{job_id}/cancel", headers=team.headers("submit")).json()
    cancelled_at = time.monotonic()  # the cancel is committed by now
    assert cancelled["status"] == "cancelled"

    time.sleep(3)  # a fixed wait is the point here: nothing more may begin during it
    after = job_state(client, team, job_id)
    assert after["status"] == "cancelled"
    with llm.state.lock:
        arrivals = list(llm.state.arrivals)
    began_after = [arrival for arrival in arrivals if arrival > cancelled_at]
    # A worker starts no call on a job status read that began more than 0.25 s before, and
    # a call takes 0.3 s: after the cancel, each of the two call slots may start at most the
    # one call it was about to start on a status read just before the cancel.
    assert len(began_after) <= 2, began_after
    # What is written after the cancel comes from those calls and the ones that had begun
    # before it (in flight, or finished and still being checked or written): none is made up.
    assert after["progress"]["attempted"] <= len(arrivals)
    assert after["progress"]["attempted"] < 20


def test_kill_9_worker_mid_job_loses_and_duplicates_nothing(
    client: Any, llm: LLMTestServer, team: Team, start_worker: Any
) -> None:
    llm.reset(FaultConfig(latency=0.1))
    first = start_worker(PRIORFORGE_LLM_CONCURRENCY="4")
    job_id = client.post("/v1/jobs", json=spec(documents=200), headers=team.headers()).json()["id"]
    wait_for(lambda: job_state(client, team, job_id)["progress"]["accepted"] >= 40, timeout=90)
    first.kill()
    at_kill = job_state(client, team, job_id)
    assert at_kill["status"] == "running"
    assert at_kill["progress"]["accepted"] < 200

    start_worker(PRIORFORGE_LLM_CONCURRENCY="8")
    wait_for(lambda: job_state(client, team, job_id)["status"] != "running", timeout=60)
    final = job_state(client, team, job_id)
    assert final["status"] == "succeeded", final
    assert final["progress"]["accepted"] == 200

    with session_scope() as session:
        items = session.execute(
            select(WorkItem.item_index, WorkItem.state).where(WorkItem.job_id == job_id)
        ).all()
        doc_keys = session.execute(
            select(Document.item_index, Document.status).where(Document.job_id == job_id)
        ).all()
        shard_records = session.scalar(
            select(func.coalesce(func.sum(Shard.records), 0)).where(Shard.job_id == job_id)
        )
    indices = [index for index, _ in doc_keys]
    assert len(indices) == len(set(indices)), "a (job_id, item_index) was written twice"
    assert sorted(indices) == sorted(index for index, _ in items), "an item has no document"
    assert {state for _, state in items} <= {"done", "failed"}
    assert sum(1 for _, status in doc_keys if status == "accepted") == 200
    assert shard_records == 200


def test_sigterm_lets_a_worker_finish_its_chunk_and_nothing_is_left_leased(
    client: Any, llm: LLMTestServer, team: Team, start_worker: Any
) -> None:
    """A SIGTERM (a deploy, a scale-down) is a warm shutdown: the items in hand finish and
    are written, the worker leases no more, the rest stays for another worker, and no item
    is left leased to wait out its lease."""
    llm.reset(FaultConfig(latency=0.4))
    first = start_worker(PRIORFORGE_LLM_CONCURRENCY="8")  # chunks of 10 (tests' setting)
    job_id = client.post("/v1/jobs", json=spec(documents=160), headers=team.headers()).json()["id"]
    wait_for(lambda: job_state(client, team, job_id)["progress"]["attempted"] >= 12, timeout=60)
    first.process.terminate()  # SIGTERM, mid-chunk: up to 8 calls of 0.4 s in flight
    assert first.process.wait(timeout=60) == 0
    with session_scope() as session:
        leased = session.scalar(
            select(func.count()).where(WorkItem.job_id == job_id, WorkItem.state == "leased")
        )
        handed_back = session.scalar(
            select(func.count()).where(
                WorkItem.job_id == job_id, WorkItem.state == "pending", WorkItem.attempts > 0
            )
        )
    at_stop = job_state(client, team, job_id)
    assert leased == 0, "the stopped worker left items leased"
    assert handed_back == 0, "items it had leased were given back unfinished"
    assert at_stop["progress"]["accepted"] < 160

    start_worker(PRIORFORGE_LLM_CONCURRENCY="16")
    wait_for(lambda: job_state(client, team, job_id)["status"] != "running", timeout=90)
    final = job_state(client, team, job_id)
    assert final["status"] == "succeeded", final
    assert final["progress"]["accepted"] == 160


def test_a_killed_workers_items_resume_within_30_seconds(
    client: Any, llm: LLMTestServer, team: Team, start_worker: Any
) -> None:
    """With the default lease and reconcile interval (not the tests' shorter ones), the items
    a kill -9 leaves leased are taken up again by another worker within 30 s."""
    import time

    defaults = {"PRIORFORGE_LEASE_SECONDS": "20", "PRIORFORGE_RECONCILE_INTERVAL_SECONDS": "5"}
    llm.reset(FaultConfig(latency=0.5))
    first = start_worker(PRIORFORGE_LLM_CONCURRENCY="4", **defaults)
    job_id = client.post("/v1/jobs", json=spec(documents=400), headers=team.headers()).json()["id"]
    wait_for(lambda: job_state(client, team, job_id)["progress"]["accepted"] >= 8, timeout=90)

    def leased() -> dict[int, str | None]:
        with session_scope() as session:
            rows = session.execute(
                select(WorkItem.item_index, WorkItem.lease_owner).where(
                    WorkItem.job_id == job_id, WorkItem.state == "leased"
                )
            ).all()
        return {index: owner for index, owner in rows}

    first.kill()
    killed_at = time.monotonic()
    orphans = leased()
    assert orphans, "the worker held no items when it was killed"
    start_worker(PRIORFORGE_LLM_CONCURRENCY="8", **defaults)

    def taken_up() -> bool:
        """Every orphan is finished, or being worked on by the new worker (not just pending)."""
        with session_scope() as session:
            rows = session.execute(
                select(WorkItem.item_index, WorkItem.state, WorkItem.lease_owner).where(
                    WorkItem.job_id == job_id, WorkItem.item_index.in_(list(orphans))
                )
            ).all()
        return all(
            state in ("done", "failed") or (state == "leased" and owner != orphans[index])
            for index, state, owner in rows
        )

    wait_for(taken_up, timeout=60, interval=0.5)
    assert time.monotonic() - killed_at < 30
    client.post(f"/v1/jobs/{job_id}/cancel", headers=team.headers("submit"))


def test_two_workers_on_two_jobs_never_both_keep_a_near_copy(
    client: Any, llm: LLMTestServer, team: Team, start_worker: Any
) -> None:
    from app.dedup.minhash import signatures

    llm.reset(FaultConfig(latency=0.05, near_every=2))  # every other call: a near copy
    start_worker()
    start_worker()
    body = spec(
        dataset="race", documents=6, length_words={"min": 200, "max": 400}, max_attempts_factor=3
    )
    job_ids = [
        client.post("/v1/jobs", json=body | {"seed": seed}, headers=team.headers()).json()["id"]
        for seed in (1, 2)
    ]

    def finished() -> bool:
        terminal = ("succeeded", "failed", "cancelled")
        return all(job_state(client, team, j)["status"] in terminal for j in job_ids)

    wait_for(finished, timeout=120)
    assert [job_state(client, team, j)["status"] for j in job_ids] == ["succeeded"] * 2
    with session_scope() as session:
        rows = session.execute(
            select(Document.text, Document.status, Document.reason).where(
                Document.job_id.in_(job_ids)
            )
        ).all()
    accepted = [text or "" for text, status, _reason in rows if status == "accepted"]
    assert len(accepted) == 12
    assert any(reason == "near" for _text, _status, reason in rows), "no near copy was generated"
    matrix = signatures(accepted).rows
    for first in range(len(accepted)):
        for second in range(first + 1, len(accepted)):
            similarity = float((matrix[first] == matrix[second]).mean())
            assert similarity < 0.7, "two accepted documents are near copies"


def test_worker_tests_start_with_no_earlier_job_left_to_run(client: Any, team: Team) -> None:
    """What start_worker does first: a job submitted and never run (as many tests leave
    behind) is cancelled, and the queue its chunks went to is empty."""
    import os

    import redis

    from tests.conftest import quiesce_jobs
    from tests.services import REDIS_URL

    left = client.post("/v1/jobs", json=spec(documents=30), headers=team.headers()).json()
    queue = redis.Redis.from_url(REDIS_URL)
    assert queue.llen(os.environ["PRIORFORGE_TASK_QUEUE"]) > 0
    quiesce_jobs()
    assert job_state(client, team, left["id"])["status"] == "cancelled"
    assert queue.llen(os.environ["PRIORFORGE_TASK_QUEUE"]) == 0


def test_a_worker_logging_json_names_the_job_of_each_record(
    client: Any, llm: LLMTestServer, team: Team, start_worker: Any
) -> None:
    import json

    llm.reset(FaultConfig(latency=0.02))
    worker = start_worker(PRIORFORGE_LOG_FORMAT="json")
    job_id = client.post("/v1/jobs", json=spec(documents=4), headers=team.headers()).json()["id"]
    wait_for(lambda: job_state(client, team, job_id)["status"] == "succeeded", timeout=60)
    records = [
        json.loads(line)
        for line in worker.log.read_text().splitlines()
        if line.startswith("{")  # Celery prints its banner to stdout, not through logging
    ]
    assert records, "the worker logged no JSON record"
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    ended = [record for record in records if record["message"] == f"job {job_id} succeeded"]
    assert len(ended) == 1
    assert ended[0]["job_id"] == job_id
    assert ended[0]["logger"] == "app.jobs.service"
