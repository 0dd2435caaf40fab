"""The pull client against a real HTTP server: verified, resumable, listing nothing."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.db import session_scope
from app.datasets.service import create_version
from app.pull import Client, PullError, PullReport, parse_target, pull, verify
from app.storage import open_store
from tests.conftest import ROOT, Team, run_local, spec
from tests.s3_server import S3TestServer
from tests.storage.damage import overwrite


class Interrupted(Exception):
    """Not an OSError: the client must not retry it, as it would a network failure."""


class Server:
    """The API in this process (uvicorn on a thread), so a test can swap its store."""

    def __init__(self) -> None:
        import uvicorn

        from app.main import app

        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def api() -> Iterator[Server]:
    server = Server()
    yield server
    server.stop()


@pytest.fixture
def version(team: Team, settings: Any, store: Any, client: Any) -> dict[str, Any]:
    """A version of four one-document files; its name and manifest."""
    name = f"pull-{uuid.uuid4().hex[:8]}"
    view = run_local(team, spec(dataset=name, documents=4), settings, store)
    assert view.job.status == "succeeded", view.job.error
    one_each = settings.model_copy(update={"version_file_bytes": 1024})
    with session_scope() as session:
        create_version(session, team.principal, name, store=store, settings=one_each)
    manifest = client.get(f"/v1/datasets/{name}/versions/1/manifest", headers=team.headers())
    return {"name": name, "manifest": manifest.json(), "prefix": _prefix(store, manifest.json())}


def _prefix(store: Any, manifest: dict[str, Any]) -> str:
    """The object-key prefix the manifest's paths are relative to (found in the store)."""
    path = manifest["files"][0]["path"]
    found = [p for p in store.root.rglob(Path(path).name)]
    assert len(found) == 1
    return str(found[0].relative_to(store.root)).removesuffix("/" + path)


@pytest.mark.usefixtures("llm")
def test_a_pull_brings_every_file_verified_and_a_second_pull_fetches_nothing(
    api: Server, team: Team, version: dict[str, Any], tmp_path: Path
) -> None:
    client = Client(api.url, team.keys["read"])
    dest = tmp_path / "copy"
    planned: list[tuple[int, int, int]] = []

    def plan(report: PullReport) -> None:
        planned.append((report.files, report.files_already_here, report.bytes_missing))

    # 100-byte ranges: each file comes in several pieces, joined in order.
    report = pull(client, version["name"], None, dest, workers=4, chunk=100, on_plan=plan)
    files = version["manifest"]["files"]
    assert all(f["bytes"] > 200 for f in files)
    assert planned == [(4, 0, sum(f["bytes"] for f in files))]
    assert (report.version, report.files, report.files_downloaded) == (1, 4, 4)
    assert report.bytes_downloaded == sum(f["bytes"] for f in files) == report.bytes_total
    for entry in files:
        data = (dest / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert json.loads((dest / "manifest.json").read_bytes()) == version["manifest"]
    assert not list(dest.rglob("*.part"))
    assert not list(dest.rglob("*.joining"))
    again = pull(client, version["name"], 1, dest, on_plan=plan)
    assert (again.files_already_here, again.bytes_downloaded, again.files_downloaded) == (4, 0, 0)
    assert planned[-1] == (4, 4, 0)
    assert verify(dest) == (4, [])


@pytest.mark.usefixtures("llm")
def test_an_interrupted_pull_resumes_without_fetching_finished_bytes_again(
    api: Server, team: Team, version: dict[str, Any], tmp_path: Path
) -> None:
    client = Client(api.url, team.keys["read"])
    dest = tmp_path / "copy"
    total = sum(f["bytes"] for f in version["manifest"]["files"])
    received = 0

    def cut_off(n: int) -> None:
        nonlocal received
        received += n
        if received > total // 2:
            raise Interrupted("the process was stopped")

    with pytest.raises(Interrupted):
        pull(client, version["name"], None, dest, workers=1, chunk=1024, progress=cut_off)
    assert not (dest / "manifest.json").exists(), "an unfinished copy must not look complete"
    # What arrived stays: pieces, and files already joined and checked (each file is
    # finished as soon as its last piece lands).
    kept = sum(p.stat().st_size for p in dest.rglob("*.part"))
    placed = sum(f["bytes"] for f in version["manifest"]["files"] if (dest / f["path"]).is_file())
    assert kept + placed > 0
    resumed = pull(client, version["name"], None, dest, workers=2, chunk=1024)
    assert resumed.bytes_downloaded == total - kept - placed
    assert verify(dest) == (4, [])


@pytest.mark.usefixtures("llm")
def test_a_flipped_byte_is_caught_and_the_bad_copy_not_kept(
    api: Server, team: Team, version: dict[str, Any], store: Any, tmp_path: Path
) -> None:
    entry = version["manifest"]["files"][0]
    key = f"{version['prefix']}/{entry['path']}"
    data = bytearray(store.get_bytes(key))
    data[len(data) // 2] ^= 0x01
    overwrite(store, key, bytes(data))
    dest = tmp_path / "copy"
    with pytest.raises(PullError, match=f"{entry['path']}: sha256 .* does not match"):
        pull(Client(api.url, team.keys["read"]), version["name"], None, dest)
    assert not (dest / entry["path"]).exists()
    assert not (dest / "manifest.json").exists()


@pytest.mark.usefixtures("llm")
def test_verify_names_each_damaged_or_missing_file(
    api: Server, team: Team, version: dict[str, Any], tmp_path: Path
) -> None:
    dest = tmp_path / "copy"
    pull(Client(api.url, team.keys["read"]), version["name"], None, dest)
    first, second = version["manifest"]["files"][:2]
    damaged = bytearray((dest / first["path"]).read_bytes())
    damaged[0] ^= 0xFF
    (dest / first["path"]).write_bytes(bytes(damaged))
    (dest / second["path"]).unlink()
    checked, problems = verify(dest)
    assert checked == 4
    assert [(p.path, p.problem.split(",")[0].split(" ")[0]) for p in problems] == [
        (first["path"], "sha256"),
        (second["path"], "missing"),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "pull", "--verify", str(dest)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "300", "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "2 of 4 files do not match the manifest" in result.stderr


@pytest.mark.usefixtures("llm")
def test_the_cli_pulls_with_the_key_from_the_environment(
    api: Server, team: Team, version: dict[str, Any], tmp_path: Path
) -> None:
    import os

    env = dict(os.environ) | {
        "PRIORFORGE_API_URL": api.url,
        "PRIORFORGE_API_KEY": team.keys["read"],
        "COLUMNS": "300",
    }
    command = [sys.executable, "-m", "app.cli", "pull", f"{version['name']}@1", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "4 files" in result.stdout
    assert "4 downloaded" in result.stdout
    denied = subprocess.run(
        command,
        cwd=ROOT,
        env=env | {"PRIORFORGE_API_KEY": "pf_nope"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert denied.returncode == 2
    assert "401" in denied.stderr
    assert "PRIORFORGE_API_KEY" in denied.stderr


@pytest.mark.usefixtures("llm")
def test_on_s3_a_redirected_pull_reads_presigned_urls_and_never_lists_the_bucket(
    api: Server,
    team: Team,
    version: dict[str, Any],
    store: Any,
    s3: S3TestServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = s3.new_bucket()
    s3_store = open_store(f"s3://{bucket}/deploy", endpoint_url=s3.endpoint)
    for path in store.root.rglob("*"):  # the deployment moved to S3, byte for byte
        if path.is_file() and not path.name.startswith("."):
            s3_store.put_file(str(path.relative_to(store.root)), path)
    monkeypatch.setattr("app.datasets.router.get_store", lambda: s3_store)
    before = len(s3.requests())
    report = pull(
        Client(api.url, team.keys["read"]), version["name"], None, tmp_path, redirect=True
    )
    assert report.files_downloaded == 4
    assert verify(tmp_path) == (4, [])
    requests = s3.requests()[before:]
    presigned = [p for m, p in requests if m == "GET" and "Signature=" in p]
    assert len(presigned) >= 4, requests
    listings = [
        p for m, p in requests if m == "GET" and p.split("?")[0].rstrip("/") in (f"/{bucket}", "")
    ]
    assert listings == [], "pull must never list the bucket"
    assert all(f"/{bucket}/deploy/" in p for _, p in requests), requests


def test_targets_and_bad_urls_are_explained() -> None:
    assert parse_target("corpus") == ("corpus", None)
    assert parse_target("corpus@latest") == ("corpus", None)
    assert parse_target("corpus@12") == ("corpus", 12)
    for bad in ("@3", "corpus@0", "corpus@x"):
        with pytest.raises(PullError):
            parse_target(bad)
    with pytest.raises(PullError, match="PRIORFORGE_API_URL"):
        Client("localhost:8000", None)


def test_a_manifest_path_that_leaves_the_destination_is_refused() -> None:
    from app.pull.client import files_of

    for path in ("../../etc/passwd", "/abs/file", "a/../../b", "a//b"):
        body = json.dumps({"files": [{"path": path, "bytes": 1, "sha256": "0" * 64}]})
        with pytest.raises(PullError, match="unsafe path"):
            files_of(body.encode())


def test_the_client_imports_nothing_of_the_server() -> None:
    probe = (
        "import sys, app.pull; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'sqlalchemy', "
        "'pydantic', 'celery', 'boto3', 'httpx', 'zstandard', 'numpy', 'starlette', 'rich'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.usefixtures("llm")
def test_a_range_that_fails_is_tried_again_and_a_lasting_failure_says_to_rerun(
    api: Server,
    team: Team,
    version: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.pull import client as pull_client

    monkeypatch.setattr("app.pull.client.time.sleep", lambda _s: None)
    real = pull_client._Pull._append
    failures = {"left": 3}

    def flaky(self: Any, file: Any, part: Path, start: int, end: int, digest: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            # The connection drops half way: bytes are on disk, and the retry resumes after
            # them (a first piece's running sha256 must then still cover every byte once).
            real(self, file, part, start, start + (end - start) // 2, digest)
            raise ConnectionResetError("connection reset by peer")
        real(self, file, part, start, end, digest)

    monkeypatch.setattr(pull_client._Pull, "_append", flaky)
    client = Client(api.url, team.keys["read"])
    report = pull(client, version["name"], None, tmp_path / "a", workers=1, chunk=300)
    assert (report.files_downloaded, failures["left"]) == (4, 0)
    assert report.bytes_downloaded == report.bytes_total  # nothing fetched twice
    assert verify(tmp_path / "a") == (4, [])

    failures["left"] = 10_000
    with pytest.raises(
        PullError,
        match="did not arrive after 5 tries .*connection reset by peer.*"
        "run the same pull again to resume",
    ):
        pull(client, version["name"], None, tmp_path / "b", workers=1)


@pytest.mark.usefixtures("llm")
def test_a_dataset_without_versions_says_to_snapshot_it(
    api: Server, team: Team, settings: Any, store: Any, tmp_path: Path
) -> None:
    name = f"unsnapped-{uuid.uuid4().hex[:6]}"
    assert run_local(team, spec(dataset=name, documents=1), settings, store).job.status == (
        "succeeded"
    )
    with pytest.raises(PullError, match=f"dataset '{name}' has no versions yet: snapshot it"):
        pull(Client(api.url, team.keys["read"]), name, None, tmp_path)
