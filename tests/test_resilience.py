"""A 1,000-document job through kill -9s, a Redis restart and a PostgreSQL restart: every
document accounted for exactly once. Private servers on their own ports (never the machine's
shared ones), real worker processes, a live API."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from app.models import Document, Shard, WorkItem
from tests.conftest import LiveServer, spec, wait_for
from tests.llm_server import FaultConfig, LLMTestServer
from tests.private_services import PrivatePostgres, PrivateRedis, admin_key, private_stack

DOCUMENTS = 1000


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[PrivatePostgres, PrivateRedis, str]]:
    with private_stack(tmp_path, "resilience") as stack:
        yield stack


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kills_and_restarts_lose_and_double_nothing(
    services: tuple[PrivatePostgres, PrivateRedis, str],
    live_server: Callable[..., LiveServer],
    start_worker: Any,
    llm: LLMTestServer,
    tmp_path: Path,
) -> None:
    postgres, redis, url = services
    env = {
        "PRIORFORGE_DATABASE_URL": url,
        "PRIORFORGE_BROKER_URL": redis.url,
        "PRIORFORGE_STORAGE_URL": (tmp_path / "objects").as_uri(),
        "PRIORFORGE_LLM_CONCURRENCY": "8",
    }
    key = admin_key(dict(os.environ) | env)
    server = live_server(**env)
    headers = {"Authorization": f"Bearer {key}"}
    llm.reset(FaultConfig(latency=0.02))
    worker = start_worker(**env)
    body = spec(documents=DOCUMENTS, max_attempts_factor=1.5)
    created = httpx.post(f"{server.base_url}/v1/jobs", json=body, headers=headers, timeout=30)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]

    def state() -> dict[str, Any] | None:
        """The job as the API shows it; None while the API cannot answer (an outage)."""
        try:
            answer = httpx.get(f"{server.base_url}/v1/jobs/{job_id}", headers=headers, timeout=10)
        except httpx.HTTPError:
            return None
        return answer.json() if answer.status_code == 200 else None

    def accepted_at_least(count: int) -> Callable[[], bool]:
        def reached() -> bool:
            view = state()
            return view is not None and view["progress"]["accepted"] >= count

        return reached

    # Three kill -9s at random points, a new worker each time.
    for point in sorted(random.Random(20261205).sample(range(100, 600), 3)):
        wait_for(accepted_at_least(point), timeout=180, interval=0.2)
        worker.kill()
        worker = start_worker(**env)
    # Redis restarted mid-job: its queued messages are gone (no persistence).
    wait_for(accepted_at_least(700), timeout=180, interval=0.2)
    redis.stop()
    redis.start_on_same_port()
    # PostgreSQL restarted mid-job: every connection drops.
    wait_for(accepted_at_least(800), timeout=240, interval=0.2)
    postgres.stop()
    postgres.start()

    def ended() -> bool:
        view = state()
        return view is not None and view["status"] != "running"

    wait_for(ended, timeout=400, interval=0.5)
    final = state()
    assert final is not None
    assert final["status"] == "succeeded", final
    assert final["progress"]["accepted"] == DOCUMENTS

    engine = create_engine(url)
    with engine.connect() as connection:
        documents = connection.execute(
            select(Document.item_index, Document.status).where(Document.job_id == job_id)
        ).all()
        items = connection.execute(
            select(WorkItem.item_index, WorkItem.state).where(WorkItem.job_id == job_id)
        ).all()
        published = connection.scalar(
            select(func.coalesce(func.sum(Shard.records), 0)).where(Shard.job_id == job_id)
        )
    engine.dispose()
    indices = [index for index, _ in documents]
    assert len(indices) == len(set(indices)), "an item was written twice"
    assert sum(1 for _, status in documents if status == "accepted") == DOCUMENTS
    assert {s for _, s in items} <= {"done", "failed"}, "items left pending or running"
    assert sorted(indices) == sorted(i for i, _ in items)
    assert published == DOCUMENTS
