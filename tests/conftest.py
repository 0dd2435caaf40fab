"""Test fixtures: a fresh Postgres database, Redis, the LLM test server, real workers.

Postgres and Redis are required. When they are unreachable the run fails with a message
saying how to start them; nothing is skipped.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.process import die_with_parent
from tests import s3_server
from tests.llm_server import FaultConfig, LLMTestServer
from tests.s3_server import S3TestServer
from tests.services import PG_ADMIN_URL, REDIS_URL, database_url

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = secrets.token_hex(4)
TEST_DB = f"priorforge_test_{RUN_ID}"
TMP = Path(tempfile.mkdtemp(prefix="priorforge-tests-"))
# The process whose next session may use the database name, files and LLM server above; None
# once a session has torn them down. mutmut runs several sessions in one process, and forks a
# child per mutant from it, each running a session of its own (see pytest_sessionstart).
_FRESH_FOR: int | None = os.getpid()


def _require(host: str, port: int, what: str, how: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=3):
            return
    except OSError as exc:
        pytest.exit(
            f"{what} is not reachable at {host}:{port} ({exc}). Start it: {how}", returncode=3
        )


LLM = LLMTestServer().start()


def _session_environment() -> dict[str, str]:
    return {
        "PRIORFORGE_DATABASE_URL": database_url(TEST_DB),
        "PRIORFORGE_TASK_QUEUE": f"priorforge-test-{RUN_ID}",
        "PRIORFORGE_STORAGE_URL": (TMP / "objects").as_uri(),
        "PRIORFORGE_DATA_DIR": str(TMP / "data"),
        "PRIORFORGE_LLM_BASE_URL": LLM.base_url,
    }


os.environ.update(
    _session_environment()
    | {
        "PRIORFORGE_BROKER_URL": REDIS_URL,
        "PRIORFORGE_LLM_API_KEY": "test-key",
        "PRIORFORGE_LLM_MODEL": "test-model",
        "PRIORFORGE_LLM_BACKOFF_BASE_SECONDS": "0.05",
        "PRIORFORGE_LLM_BACKOFF_MAX_SECONDS": "2",
        "PRIORFORGE_LLM_TIMEOUT_SECONDS": "10",
        "PRIORFORGE_LEASE_SECONDS": "6",
        "PRIORFORGE_RECONCILE_INTERVAL_SECONDS": "1",
        "PRIORFORGE_STALL_SECONDS": "8",
        "PRIORFORGE_CHUNK_SIZE": "10",
    }
)
os.environ.update(s3_server.ENVIRONMENT)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """PRIORFORGE_TEST_ORDER=reverse runs the suite back to front: a test that passes only
    after (or only before) another shows up as a failure in one of the two orders."""
    order = os.environ.get("PRIORFORGE_TEST_ORDER", "file")
    if order not in ("file", "reverse"):
        raise pytest.UsageError(f"PRIORFORGE_TEST_ORDER={order!r}: use 'file' or 'reverse'")
    if order == "reverse":
        items.reverse()


def _fresh_session_resources() -> None:
    """A later session in this process, or one in a forked child (mutmut runs each mutant so),
    gets its own database, files, queue and LLM test server: the first session's are gone
    after it, and forked children run side by side."""
    global RUN_ID, TEST_DB, TMP, LLM
    RUN_ID = secrets.token_hex(4)
    TEST_DB = f"priorforge_test_{RUN_ID}"
    TMP = Path(tempfile.mkdtemp(prefix="priorforge-tests-"))
    LLM = LLMTestServer().start()
    os.environ.update(_session_environment())
    from app.core.db import get_engine, get_reading_sessionmaker, get_sessionmaker
    from app.core.settings import get_settings
    from app.storage.default import get_store

    for cached in (get_settings, get_engine, get_sessionmaker, get_reading_sessionmaker, get_store):
        cached.cache_clear()
    celery = sys.modules.get("workers.celery_app")
    if celery is not None:
        celery.celery_app.conf.task_default_queue = os.environ["PRIORFORGE_TASK_QUEUE"]


def pytest_sessionstart(session: pytest.Session) -> None:  # noqa: ARG001
    from sqlalchemy import create_engine, text

    if _FRESH_FOR != os.getpid():
        _fresh_session_resources()
    _require("127.0.0.1", 5432, "PostgreSQL", "pg_ctlcluster $(ls /etc/postgresql) main start")
    _require("127.0.0.1", 6379, "Redis", "redis-server --daemonize yes --bind 127.0.0.1")
    # bench/mutate.py migrates one template database for all of its sessions (one per mutant):
    # a copy costs a tenth of creating and migrating one.
    template = os.environ.get("PRIORFORGE_TEST_DB_TEMPLATE")
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        clause = f' TEMPLATE "{template}"' if template else ""
        connection.execute(text(f'CREATE DATABASE "{TEST_DB}"{clause}'))
    admin.dispose()
    if not template:
        from app.core import migrate

        migrate.upgrade(os.environ["PRIORFORGE_DATABASE_URL"])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:  # noqa: ARG001
    from sqlalchemy import create_engine, text

    from app.core.db import get_engine

    global _FRESH_FOR
    _FRESH_FOR = None
    LLM.stop()
    get_engine().dispose()
    if not os.environ.get("PRIORFORGE_KEEP_TEST_FILES"):
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)'))
        admin.dispose()
    try:
        import redis

        redis.Redis.from_url(REDIS_URL).delete(os.environ["PRIORFORGE_TASK_QUEUE"])
    except Exception:  # best effort; the queue name is unique to this run anyway
        pass
    if os.environ.get("PRIORFORGE_KEEP_TEST_FILES"):
        print(f"\ntest files kept in {TMP}")  # noqa: T201
    else:
        shutil.rmtree(TMP, ignore_errors=True)


@pytest.fixture
def llm() -> Iterator[LLMTestServer]:
    """The shared LLM test server, with faults reset before and after each test."""
    LLM.reset(FaultConfig())
    yield LLM
    LLM.reset(FaultConfig())


@pytest.fixture
def settings() -> Any:
    from app.core.settings import Settings

    return Settings()


@pytest.fixture
def scratch_database_url() -> Iterator[str]:
    """An empty Postgres database of its own, dropped after the test."""
    from sqlalchemy import create_engine, text

    name = f"priorforge_scratch_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield database_url(name)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3TestServer]:
    """moto's S3 server on loopback, started once for the tests that use it."""
    server = S3TestServer(TMP / f"s3-{os.getpid()}.log").start()
    yield server
    server.stop()


@pytest.fixture
def store(settings: Any) -> Any:
    from app.storage import open_store

    return open_store(settings.effective_storage_url)


class Team:
    """A fresh team per test, with one key per role: tests never share data."""

    def __init__(self) -> None:
        from app.core.db import session_scope
        from app.teams.keys import Role
        from app.teams.service import Principal, create_key

        self.name = f"team-{uuid.uuid4().hex[:10]}"
        self.keys: dict[str, str] = {}
        with session_scope() as session:
            for role in (Role.READ, Role.SUBMIT, Role.ADMIN):  # an operator: add_operator()
                issued = create_key(session, self.name, role)
                self.keys[role.value] = issued.token
            self.id = issued.team.id
        self.principal = Principal(team_id=self.id, role=Role.ADMIN, key_id=uuid.uuid4())

    def add_operator(self) -> str:
        """An operator key of this team (the deployment's teams are its to manage)."""
        from app.core.db import session_scope
        from app.teams.keys import Role
        from app.teams.service import create_key

        with session_scope() as session:
            self.keys["operator"] = create_key(session, self.name, Role.OPERATOR).token
        return self.keys["operator"]

    def headers(self, role: str = "admin", **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}", **extra}


@pytest.fixture
def team() -> Team:
    return Team()


@pytest.fixture
def other_team() -> Team:
    return Team()


@pytest.fixture
def client() -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


def spec(**overrides: Any) -> dict[str, Any]:
    """A small valid job spec; short documents keep tests fast."""
    base: dict[str, Any] = {
        "dataset": f"ds-{uuid.uuid4().hex[:8]}",
        "documents": 6,
        "stances": {"aligned": 1},
        "length_words": {"min": 40, "max": 120},
        "seed": 1,
    }
    return base | overrides


class ChildProcess:
    """A ``priorforge`` command in a subprocess, its output in a log file under TMP."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.log = TMP / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self._log_handle = self.log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            cwd=ROOT,
            env=env,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )

    def wait_until_ready(self, ready: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.log.name} did not start:\n{self.log.read_text()[-3000:]}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log_handle.close()


class WorkerProcess(ChildProcess):
    def __init__(self, env: dict[str, str], *args: str) -> None:
        super().__init__("worker", ["worker", "--loglevel", "INFO", *args], env)
        self.wait_until_ready(lambda: b"ready." in self.log.read_bytes())

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no cleanup, no acks, leases left behind
        self.process.wait(timeout=10)


def quiesce_jobs() -> None:
    """Cancel every job still queued or running and drop this run's task queue.

    Jobs that earlier tests submitted and never ran stay active: a worker's reconciler would
    pick them up and run them beside the test's own job, so that test's timings, LLM calls
    and throttles would depend on what ran before it.
    """
    import redis
    from sqlalchemy import select

    from app.core.db import session_scope
    from app.jobs import service as jobs
    from app.models import Job

    with session_scope() as session:
        active = select(Job.id).where(Job.status.in_(("queued", "running")))
        for job_id in session.scalars(active).all():
            jobs.end_job(session, job_id, "cancelled")
    redis.Redis.from_url(REDIS_URL).delete(os.environ["PRIORFORGE_TASK_QUEUE"])


@pytest.fixture
def start_worker() -> Iterator[Callable[..., WorkerProcess]]:
    """Start real Celery worker processes on Redis, in a world where no earlier test's job is
    left to run; all are stopped after the test."""
    quiesce_jobs()
    started: list[WorkerProcess] = []

    def start(*args: str, **env_overrides: str) -> WorkerProcess:
        env = dict(os.environ) | env_overrides
        worker = WorkerProcess(env, *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def submit_local(
    team: Team, raw_spec: dict[str, Any], settings: Any, kind: str = "generate"
) -> tuple[Any, Any]:
    """Submit a job whose chunks go to a LocalDispatcher: (job, dispatcher)."""
    from app.core.db import session_scope
    from app.jobs import service as jobs
    from app.jobs.dispatch import LocalDispatcher
    from app.jobs.spec import JobSpec
    from app.scenarios import extraction
    from app.scenarios.extraction_spec import ExtractionSpec

    dispatcher = LocalDispatcher()
    with session_scope() as session:
        if kind == "extract_scenarios":
            job, _ = extraction.submit_extraction(
                session,
                team.principal,
                ExtractionSpec.model_validate(raw_spec),
                idempotency_key=None,
                dispatcher=dispatcher,
                settings=settings,
            )
        else:
            job, _ = jobs.submit_job(
                session,
                team.principal,
                JobSpec.model_validate(raw_spec),
                idempotency_key=None,
                dispatcher=dispatcher,
                settings=settings,
            )
    return job, dispatcher


def run_first_chunk(
    team: Team, raw_spec: dict[str, Any], settings: Any, store: Any
) -> tuple[Any, Any]:
    """Submit a job to a LocalDispatcher and run its first chunk here, its own items only
    (not the job's next ones, as a worker's chunk takes while it has time): (job, dispatcher)."""
    from app.generation.pipeline import run_chunk

    job, dispatcher = submit_local(team, raw_spec, settings)
    chunk = dispatcher.pop()
    assert chunk is not None
    own_items = settings.model_copy(update={"chunk_seconds": 0})
    run_chunk(*chunk, worker_id="w", dispatcher=dispatcher, settings=own_items, store=store)
    return job, dispatcher


def run_local(
    team: Team,
    raw_spec: dict[str, Any],
    settings: Any,
    store: Any,
    kind: str = "generate",
    timeout: float = 120,
) -> Any:
    """Submit and run a job in this process (the CLI's path); return its final view."""
    from app.core.db import session_scope
    from app.generation import local_runner
    from app.jobs import service as jobs

    job, dispatcher = submit_local(team, raw_spec, settings, kind)
    run = local_runner.start(job.id, dispatcher, settings=settings, store=store)
    assert run.done.wait(timeout), "local run did not finish"
    if run.error is not None:
        raise run.error
    with session_scope() as session:
        return jobs.view(session, jobs.get_job(session, team.principal, job.id))


@pytest.fixture(autouse=True)
def _fresh_rate_limiters() -> None:
    """The shared LLM limiter keeps what it learned (a cut rate, a wait) in Redis for an
    hour, by provider, model and key, which the tests share: each test starts from none."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        stale = list(client.scan_iter("priorforge:limits:*", count=1000))
        if stale:
            client.delete(*stale)
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _close_llm_clients() -> Iterator[None]:
    """Tests that call run_chunk on the main thread leave a client open; close it."""
    yield
    from app.generation.pipeline import close_thread_resources

    close_thread_resources()


class LiveServer(ChildProcess):
    """``priorforge serve`` in a subprocess on this run's Postgres and Redis.

    The server binds a free port itself (``--port 0``) and the port is read from its log:
    a port probed here and handed over could be taken in between, or still be answered by
    an earlier server that has not let go of it.
    """

    def __init__(self, *args: str, **env_overrides: str) -> None:
        self.port = 0
        self.base_url = ""
        serve = ["serve", "--port", "0", *args]
        super().__init__("serve", serve, dict(os.environ) | env_overrides)
        self.wait_until_ready(self._healthy)

    def _healthy(self) -> bool:
        import httpx

        if not self.port:
            bound = LISTENING.search(self.log.read_text(errors="replace"))
            if bound is None:
                return False
            self.port = int(bound.group(1))
            self.base_url = f"http://127.0.0.1:{self.port}"
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@pytest.fixture
def live_server() -> Iterator[Callable[..., LiveServer]]:
    """Start API servers for a test; all are stopped after it."""
    started: list[LiveServer] = []

    def start(*args: str, **env_overrides: str) -> LiveServer:
        server = LiveServer(*args, **env_overrides)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
