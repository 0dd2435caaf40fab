"""Embedded mode: no database, broker or storage configured; and the bundled local model."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.llm import local
from tests.conftest import LISTENING, ROOT, Team, run_local, spec, wait_for
from tests.llm_server import LLMTestServer


def bare_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIORFORGE_")}
    return env | {"PRIORFORGE_DATA_DIR": str(data_dir)} | extra


@pytest.mark.slow
def test_serve_without_configuration_or_redis_completes_a_job_over_http(
    tmp_path: Path, llm: LLMTestServer
) -> None:
    env = bare_env(tmp_path / "data", PRIORFORGE_LLM_BASE_URL=llm.base_url)
    log_path = tmp_path / "serve.log"
    log = log_path.open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        bound = wait_for(lambda: LISTENING.search(log_path.read_text(errors="replace")), 60)
        base = f"http://127.0.0.1:{bound.group(1)}"
        wait_for(lambda: _up(base), timeout=60)
        key = subprocess.run(
            [
                sys.executable,
                "-m",
                "app.cli",
                "keys",
                "create",
                "--team",
                "solo",
                "--role",
                "admin",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            assert client.get("/readyz").json()["checks"]["broker"] == "ok"
            created = client.post("/v1/jobs", json=spec(documents=4, dataset="solo"))
            assert created.status_code == 202, created.text
            job_id = created.json()["id"]

            def finished() -> dict[str, Any] | None:
                job = client.get(f"/v1/jobs/{job_id}").json()
                return job if job["status"] not in ("queued", "running") else None

            job = wait_for(finished, timeout=120, interval=0.5)
            assert job["status"] == "succeeded", job
            assert job["progress"]["accepted"] == 4
            version = client.post("/v1/datasets/solo/versions").json()["version"]
            manifest = client.get(f"/v1/datasets/solo/versions/{version}/manifest").json()
            entry = manifest["files"][0]
            name = entry["path"].rsplit("/", 1)[-1]
            body = client.get(f"/v1/datasets/solo/versions/{version}/files/{name}").content
            assert hashlib.sha256(body).hexdigest() == entry["sha256"]
        assert (tmp_path / "data" / "priorforge.db").exists()
        assert (tmp_path / "data" / "broker" / "queue").is_dir()
        worker_pids = _children(server.pid)
        assert worker_pids, "serve should have started a worker process"
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    assert "embedded broker" in (tmp_path / "serve.log").read_text()
    # The worker goes with the server, however the server ends.
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in worker_pids), timeout=30)


def _children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_the_bundled_local_model_writes_documents(team: Team, settings: Any, store: Any) -> None:
    """The real SmolLM2 model, served by llama.cpp, through the same provider code path."""
    local_only = settings.model_copy(update={"llm_base_url": None})
    view = run_local(
        team,
        spec(
            documents=2,
            length_words={"min": 30, "max": 900},
            sampling={"temperature": 0.8, "max_tokens": 900, "frequency_penalty": 0.5},
            surface_forms=["news_report", "blog_post"],
            max_attempts_factor=5,
        ),
        local_only,
        store,
        # Up to ten attempts, one at a time, of up to 900 tokens at about 70 a second here.
        timeout=300,
    )
    assert view.job.status == "succeeded", view.job.error
    assert view.progress.accepted == 2
    assert view.usage.completion_tokens > 50
    from app.core.db import session_scope
    from app.jobs import repository

    with session_scope() as session:
        docs = repository.list_documents(
            session, view.job.id, status="accepted", after_index=-1, limit=10
        )
        assert {d.model for d in docs} == {local.MODEL_NAME}


def test_without_provider_or_local_model_submission_names_the_fix(
    client: Any, team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.core.settings import get_settings

    def not_installed() -> Path:
        raise local.LocalModelUnavailable("no model")

    monkeypatch.setattr(local, "check_installed", not_installed)
    monkeypatch.setattr(get_settings(), "llm_base_url", None)
    response = client.post("/v1/jobs", json=spec(), headers=team.headers())
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "pip install 'priorforge[local]'" in detail
    assert "PRIORFORGE_LLM_BASE_URL" in detail
    assert client.get("/v1/jobs", headers=team.headers()).json()["items"] == []
