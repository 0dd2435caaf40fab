"""A cancelled job's accepted documents are published by the next snapshot, exactly once."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.datasets import service as datasets
from app.datasets.shards import read_shard
from app.generation import local_runner
from app.jobs import service as jobs
from app.jobs.dispatch import LocalDispatcher
from app.jobs.spec import JobSpec
from app.models import Document, Shard
from tests.conftest import Team, spec, wait_for
from tests.llm_server import FaultConfig, LLMTestServer


def accepted_ids(job_id: uuid.UUID) -> set[str]:
    with session_scope() as session:
        rows = session.scalars(
            select(Document.id).where(Document.job_id == job_id, Document.status == "accepted")
        )
        return {str(r) for r in rows}


def cancelled_midway(
    client: Any, llm: LLMTestServer, team: Team, settings: Any, store: Any, dataset: str
) -> uuid.UUID:
    """Run a large job in this process with a slow model; cancel it once a few are accepted."""
    llm.reset(FaultConfig(latency=0.2))
    slow = settings.model_copy(update={"llm_concurrency": 2, "shard_max_records": 3})
    dispatcher = LocalDispatcher()
    with session_scope() as session:
        job, _ = jobs.submit_job(
            session,
            team.principal,
            JobSpec.model_validate(spec(dataset=dataset, documents=200)),
            idempotency_key=None,
            dispatcher=dispatcher,
            settings=slow,
        )
    run = local_runner.start(job.id, dispatcher, settings=slow, store=store)
    wait_for(lambda: len(accepted_ids(job.id)) >= 4, timeout=60, interval=0.05)
    cancelled = client.post(f"/v1/jobs/{job.id}/cancel", headers=team.headers("submit"))
    assert cancelled.json()["status"] == "cancelled"
    assert run.done.wait(60), "the runner did not stop after the cancel"
    assert run.error is None
    return job.id


def published_ids(client: Any, team: Team, dataset: str, version: int) -> list[str]:
    base = f"/v1/datasets/{dataset}/versions/{version}"
    manifest = client.get(f"{base}/manifest", headers=team.headers()).json()
    ids: list[str] = []
    for entry in manifest["files"]:
        body = client.get(f"{base}/files/{entry['path']}", headers=team.headers()).content
        ids.extend(record["id"] for record in read_shard(body))
    return ids


def test_a_cancelled_jobs_accepted_documents_are_snapshotted_once(
    client: Any, llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    job_id = cancelled_midway(client, llm, team, settings, store, "halted")
    accepted = accepted_ids(job_id)
    assert 4 <= len(accepted) < 200

    created = client.post("/v1/datasets/halted/versions", headers=team.headers())
    assert created.status_code == 201, created.text
    assert created.json()["records"] == len(accepted)
    ids = published_ids(client, team, "halted", created.json()["version"])
    assert sorted(ids) == sorted(accepted)

    again = client.post("/v1/datasets/halted/versions", headers=team.headers())
    assert again.status_code == 200, again.text
    assert again.json()["version"] == created.json()["version"]
    with session_scope() as session:
        seqs = session.scalars(select(Shard.seq).where(Shard.job_id == job_id)).all()
        unsharded = session.scalar(
            select(func.count())
            .select_from(Document)
            .where(Document.job_id == job_id, Document.status == "accepted")
            .where(Document.shard_id.is_(None))
        )
    assert sorted(seqs) == list(range(len(seqs)))
    assert unsharded == 0

    # A result still in flight at the cancel is written later; the next snapshot publishes it
    # in a new shard that continues the job's numbers.
    late = arrives_late(job_id)
    following = client.post("/v1/datasets/halted/versions", headers=team.headers())
    assert (following.status_code, following.json()["version"]) == (201, 2), following.text
    assert sorted(published_ids(client, team, "halted", 2)) == sorted(accepted | {late})
    with session_scope() as session:
        newest = session.scalars(
            select(Shard).where(Shard.job_id == job_id).order_by(Shard.seq.desc())
        ).first()
    assert newest is not None
    assert newest.seq == len(seqs)
    assert f"/{job_id}-{len(seqs):05d}-" in newest.object_key


def arrives_late(job_id: uuid.UUID) -> str:
    """Write one more accepted document for the job, as a result landing after its cancel."""
    with session_scope() as session:
        model = session.scalars(
            select(Document).where(Document.job_id == job_id, Document.status == "accepted")
        ).first()
        last = session.scalar(
            select(func.max(Document.item_index)).where(Document.job_id == job_id)
        )
        assert model is not None
        assert last is not None
        columns = {c.key: getattr(model, c.key) for c in Document.__table__.columns}
        late = Document(
            **columns
            | {
                "id": uuid.uuid4(),
                "item_index": last + 1,
                "text": "A late result.",
                "shard_id": None,
                "position": None,
            }
        )
        session.add(late)
        return str(late.id)


@pytest.mark.usefixtures("llm")
def test_two_snapshots_at_once_put_each_document_in_one_shard(
    client: Any, llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    job_id = cancelled_midway(client, llm, team, settings, store, "raced")
    accepted = accepted_ids(job_id)
    barrier = threading.Barrier(2)
    outcomes: list[Any] = []

    def snapshot() -> None:
        barrier.wait()
        try:
            with session_scope() as session:
                view = datasets.create_version(
                    session, team.principal, "raced", store=store, settings=settings
                )
                outcomes.append((view.version.number, view.created))
        except BaseException as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=snapshot) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == [(1, False), (1, True)], outcomes
    with session_scope() as session:
        records = session.scalar(select(func.sum(Shard.records)).where(Shard.job_id == job_id))
    assert records == len(accepted)
    assert sorted(published_ids(client, team, "raced", 1)) == sorted(accepted)
