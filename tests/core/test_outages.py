"""The API while its database or broker is gone: 503 with Retry-After, never 500; and back
to normal once they return. Private servers on their own ports, stopped and started here."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, spec, wait_for
from tests.private_services import PrivatePostgres, PrivateRedis, admin_key, private_stack


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[PrivatePostgres, PrivateRedis, str]]:
    with private_stack(tmp_path, "outage") as stack:
        yield stack


@pytest.mark.timeout(300)
def test_the_api_answers_503_while_postgres_or_redis_is_down_and_recovers(
    services: tuple[PrivatePostgres, PrivateRedis, str],
    live_server: Callable[..., LiveServer],
    tmp_path: Path,
) -> None:
    postgres, redis, url = services
    env = {
        "PRIORFORGE_DATABASE_URL": url,
        "PRIORFORGE_BROKER_URL": redis.url,
        "PRIORFORGE_STORAGE_URL": (tmp_path / "objects").as_uri(),
    }
    key = admin_key(dict(os.environ) | env)
    server = live_server(**env)
    headers = {"Authorization": f"Bearer {key}"}

    def get_jobs() -> httpx.Response:
        return httpx.get(f"{server.base_url}/v1/jobs", headers=headers, timeout=30)

    def post_job() -> httpx.Response:
        body: dict[str, Any] = spec(documents=1)
        return httpx.post(f"{server.base_url}/v1/jobs", json=body, headers=headers, timeout=30)

    assert get_jobs().status_code == 200

    postgres.stop()
    for answer in (get_jobs(), post_job()):
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["retry-after"] == "5"
        assert "the database is unreachable" in answer.json()["detail"]
    postgres.start()
    wait_for(lambda: get_jobs().status_code == 200, timeout=30, interval=0.5)

    redis.stop()
    # A job stays accepted: it is stored before it is sent, and what could not be sent is
    # sent again by the reconciler once the broker is back. Nothing answers 500.
    queued = post_job()
    assert queued.status_code == 202, queued.text
    assert get_jobs().status_code == 200  # reading needs no broker
    ready = httpx.get(f"{server.base_url}/readyz", timeout=30)
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"].startswith("error")
    redis.start_on_same_port()
    wait_for(
        lambda: httpx.get(f"{server.base_url}/readyz", timeout=30).status_code == 200,
        timeout=30,
        interval=0.5,
    )
    assert post_job().status_code == 202
