"""The API against its own OpenAPI document: schemathesis, every check, on a live server.

A real ``priorforge serve`` on this run's PostgreSQL and Redis is tested with ``st run``:
all checks (no 5xx, documented statuses, content types and headers, response bodies that
match their schemas, valid data accepted and invalid data rejected, 405s with Allow, auth
that is never ignored, resources that exist after they are created and vanish after they are
deleted), every phase (coverage, fuzzing and the stateful phase, whose links are inferred from
the document), 200 examples per operation, with a fixed seed so a failure is reproducible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TMP, LiveServer, Team, run_local, spec

HERE = Path(__file__).resolve().parent
SEED = os.environ.get("PRIORFORGE_CONTRACT_SEED", "20261125")


def seeded_config(team: Team, settings: Any, store: Any) -> Path:
    """The committed settings plus the ids of a finished job and a published version, which
    half of the generated path parameters use: so the success answers of the documents,
    manifest and file endpoints are checked too, not only their 404s."""
    from app.core.db import session_scope
    from app.datasets import service as datasets
    from app.jobs import service as jobs

    view = run_local(team, spec(documents=3, dataset="contract-data"), settings, store)
    with session_scope() as session:
        datasets.create_version(
            session, team.principal, "contract-data", store=store, settings=settings
        )
        _dataset, version = datasets.get_version(session, team.principal, "contract-data", 1)
        documents, _next = jobs.list_documents(
            session, team.principal, view.job.id, status=None, cursor=None, limit=10
        )
    manifest = json.loads(datasets.read_manifest(store, version))
    known = {
        "name": ["contract-data"],
        "version": [1],
        # The manifest's path and the bare file name: the route takes both.
        "file": [p for e in manifest["files"] for p in (e["path"], e["path"].rsplit("/")[-1])],
        "job_id": [str(view.job.id)],
        "document_id": [str(d.id) for d in documents],
    }
    lines = [(HERE / "schemathesis.toml").read_text(), "[dictionaries]"]
    lines += [f"{name} = {{ values = {json.dumps(values)} }}" for name, values in known.items()]
    lines.append("[parameters]")
    lines += [f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}' for name in known]
    config = TMP / "schemathesis-seeded.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def forget_jobs(team: Team, queue: str) -> None:
    """Cancel what the run submitted and drop its queue: reconcilers of later tests would
    otherwise send those jobs' items to their workers."""
    import redis
    from sqlalchemy import select

    from app.core.db import session_scope
    from app.jobs import service as jobs
    from app.models import Job
    from tests.services import REDIS_URL

    with session_scope() as session:
        active = select(Job.id).where(Job.team_id == team.id, Job.status.in_(("queued", "running")))
        for job_id in session.scalars(active).all():
            jobs.cancel_job(session, team.principal, job_id)
    redis.Redis.from_url(REDIS_URL).delete(queue)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_api_keeps_its_openapi_contract(
    live_server: Callable[..., LiveServer], team: Team, settings: Any, store: Any
) -> None:
    config = seeded_config(team, settings, store)
    # The jobs schemathesis submits are only queued, each planning a small window, on a queue
    # of their own: no worker of a later test is to run them.
    queue = f"{settings.task_queue}-contract"
    # One key sends every request: the team's request rate (tests/core/test_request_rate.py)
    # would answer most of them 429 before they reach the code under test.
    server = live_server(
        "--workers",
        "2",
        PRIORFORGE_PLAN_AHEAD_ITEMS="64",
        PRIORFORGE_TASK_QUEUE=queue,
        PRIORFORGE_TEAM_MAX_REQUESTS_PER_MINUTE="0",
    )
    report = TMP / "schemathesis"
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(config),
        "run",
        f"{server.base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {team.keys['admin']}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        "200",
        "--seed",
        SEED,
        "--report",
        "junit",
        "--report-dir",
        str(report),
        "--no-color",
    ]
    env = dict(os.environ) | {
        "SCHEMATHESIS_HOOKS": "tests.contract.hooks",
        "PYTHONPATH": str(HERE.parent.parent),
    }
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, env=env, cwd=TMP, timeout=840, check=False
        )
    finally:
        server.stop()
        forget_jobs(team, queue)
    output = result.stdout + result.stderr
    report.mkdir(parents=True, exist_ok=True)
    (report / "st-run.txt").write_text(output)  # kept with PRIORFORGE_KEEP_TEST_FILES=1
    summary = output[output.rfind("SUMMARY") - 40 :] if "SUMMARY" in output else output[-4000:]
    assert result.returncode == 0, f"{output[-20000:]}\n\nserver log: {server.log}"
    assert "Tested: " in summary, summary
