"""Dataset versions over HTTP: manifests, checksums, Range downloads, team scoping."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import unquote

import pytest
import zstandard

from tests.conftest import Team, run_local, spec
from tests.storage.damage import overwrite


def publish(team: Team, dataset: str, settings: Any, store: Any, documents: int = 8) -> None:
    view = run_local(team, spec(dataset=dataset, documents=documents), settings, store)
    assert view.job.status == "succeeded", view.job.error


def first_file(
    client: Any, team: Team, dataset: str, settings: Any, store: Any, documents: int
) -> tuple[str, dict[str, Any]]:
    """Publish a job's documents, snapshot version 1: its URL and its manifest's first file."""
    publish(team, dataset, settings, store, documents=documents)
    client.post(f"/v1/datasets/{dataset}/versions", headers=team.headers())
    base = f"/v1/datasets/{dataset}/versions/1"
    entry = client.get(f"{base}/manifest", headers=team.headers()).json()["files"][0]
    return base, entry


@pytest.mark.usefixtures("llm")
def test_version_manifest_checksums_match_served_bytes(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    # Three staged shards of the job, compacted into one version file.
    small_shards = settings.model_copy(update={"shard_max_records": 3})
    publish(team, "corpus", small_shards, store, documents=8)
    created = client.post("/v1/datasets/corpus/versions", headers=team.headers("submit"))
    assert created.status_code == 201, created.text
    version = created.json()["version"]
    assert version == 1
    assert created.json()["records"] == 8

    response = client.get(
        f"/v1/datasets/corpus/versions/{version}/manifest", headers=team.headers()
    )
    assert response.status_code == 200
    manifest = response.json()
    assert hashlib.sha256(response.content).hexdigest() == created.json()["manifest_sha256"]
    assert response.headers["etag"] == f'"{created.json()["manifest_sha256"]}"'
    assert len(manifest["files"]) == 1
    assert sum(f["records"] for f in manifest["files"]) == 8
    for entry in manifest["files"]:
        name = entry["path"].rsplit("/", 1)[-1]
        served = client.get(
            f"/v1/datasets/corpus/versions/{version}/files/{name}", headers=team.headers()
        )
        assert served.status_code == 200
        assert len(served.content) == entry["bytes"]
        assert hashlib.sha256(served.content).hexdigest() == entry["sha256"]
        assert served.headers["x-content-sha256"] == entry["sha256"]
        lines = zstandard.ZstdDecompressor().decompressobj().decompress(served.content).splitlines()
        assert len(lines) == entry["records"]


@pytest.mark.usefixtures("llm")
def test_range_requests_reassemble_to_the_same_sha256(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    publish(team, "ranged", settings, store, documents=10)
    version = client.post("/v1/datasets/ranged/versions", headers=team.headers()).json()["version"]
    manifest = client.get(
        f"/v1/datasets/ranged/versions/{version}/manifest", headers=team.headers()
    ).json()
    entry = manifest["files"][0]
    url = f"/v1/datasets/ranged/versions/{version}/files/{entry['path'].rsplit('/', 1)[-1]}"

    head = client.head(url, headers=team.headers())
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == entry["bytes"]
    assert head.headers["accept-ranges"] == "bytes"
    assert head.content == b""

    size, step, parts = entry["bytes"], 777, []
    for start in range(0, size, step):
        end = min(start + step, size) - 1
        part = client.get(url, headers=team.headers(Range=f"bytes={start}-{end}"))
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes {start}-{end}/{size}"
        parts.append(part.content)
    assert hashlib.sha256(b"".join(parts)).hexdigest() == entry["sha256"]

    suffix = client.get(url, headers=team.headers(Range="bytes=-100"))
    assert suffix.status_code == 206
    assert suffix.content == b"".join(parts)[-100:]
    beyond = client.get(url, headers=team.headers(Range=f"bytes={size}-"))
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"
    cached = client.get(url, headers=team.headers(**{"If-None-Match": f'"{entry["sha256"]}"'}))
    assert cached.status_code == 304


@pytest.mark.usefixtures("llm")
def test_if_range_sends_the_range_only_while_the_copy_is_current(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    base, entry = first_file(client, team, "resumed", settings, store, documents=4)
    url = f"{base}/files/{entry['path']}"
    whole = client.get(url, headers=team.headers()).content

    current = client.get(
        url, headers=team.headers(Range="bytes=10-", **{"If-Range": f'"{entry["sha256"]}"'})
    )
    assert current.status_code == 206
    assert current.content == whole[10:]
    stale = client.get(url, headers=team.headers(Range="bytes=10-", **{"If-Range": '"0123"'}))
    assert stale.status_code == 200
    assert stale.content == whole
    assert "content-range" not in stale.headers


@pytest.mark.usefixtures("llm")
def test_corrupt_storage_is_reported_never_served(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    from app.core.db import session_scope
    from app.datasets import service as datasets

    base, entry = first_file(client, team, "damaged", settings, store, documents=4)
    with session_scope() as session:
        dataset, version = datasets.get_version(session, team.principal, "damaged", 1)
        manifest_key = version.manifest_key
        shard_key = datasets.find_file(store, dataset, version, entry["path"]).key

    # A shard whose size is not the manifest's: 503 before any byte is sent.
    shard = store.get_bytes(shard_key)
    overwrite(store, shard_key, shard + b"tail")
    truncated = client.get(f"{base}/files/{entry['path']}", headers=team.headers())
    assert truncated.status_code == 503, truncated.text
    assert f"{len(shard) + 4} bytes, the manifest says {len(shard)}" in truncated.json()["detail"]
    overwrite(store, shard_key, shard)
    assert client.get(f"{base}/files/{entry['path']}", headers=team.headers()).content == shard

    # A manifest whose bytes no longer match the sha256 recorded at snapshot: 409, for the
    # manifest and, once no process holds the listing it verified before, for every file it
    # would name. (A process that did verify it goes on serving what that listing names.)
    manifest = store.get_bytes(manifest_key)
    overwrite(store, manifest_key, manifest.replace(b'"records"', b'"records" ', 1))
    assert client.get(f"{base}/files/{entry['path']}", headers=team.headers()).content == shard
    datasets.forget_listings()
    for path in (f"{base}/manifest", f"{base}/files/{entry['path']}"):
        response = client.get(path, headers=team.headers())
        assert response.status_code == 409, (path, response.text)
        assert "does not match its recorded sha256" in response.json()["detail"]


@pytest.mark.usefixtures("llm")
def test_versions_are_immutable_snapshots(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    publish(team, "growing", settings, store, documents=3)
    first = client.post("/v1/datasets/growing/versions", headers=team.headers()).json()
    publish(team, "growing", settings, store, documents=4)
    second = client.post("/v1/datasets/growing/versions", headers=team.headers()).json()
    assert (first["version"], second["version"]) == (1, 2)
    assert (first["records"], second["records"]) == (3, 7)
    again = client.get("/v1/datasets/growing/versions/1/manifest", headers=team.headers()).json()
    assert again["records"] == 3
    listed = client.get("/v1/datasets/growing/versions", headers=team.headers()).json()
    assert [v["version"] for v in listed] == [1, 2]


@pytest.mark.usefixtures("llm")
def test_dataset_errors(
    client: Any, team: Team, other_team: Team, settings: Any, store: Any
) -> None:
    missing = client.post("/v1/datasets/nothing-here/versions", headers=team.headers())
    assert missing.status_code == 404
    publish(team, "private", settings, store, documents=2)
    client.post("/v1/datasets/private/versions", headers=team.headers())
    for path in (
        "/v1/datasets/private/versions/1/manifest",
        "/v1/datasets/private/versions/1/files/anything.jsonl.zst",
    ):
        assert client.get(path, headers=other_team.headers()).status_code == 404
    assert (
        client.get("/v1/datasets/private/versions/9/manifest", headers=team.headers()).status_code
        == 404
    )
    # Encoded slashes: an HTTP client would resolve a literal "../.." before sending it, and
    # the request would never reach the file handler this is about.
    files = "/v1/datasets/private/versions/1/files"
    for escape in ("..%2F..%2Fmanifest.json", "shards%2F..%2F..%2F..%2Fetc%2Fpasswd"):
        no_file = client.get(f"{files}/{escape}", headers=team.headers())
        assert no_file.status_code == 404, no_file.text
        assert f"has no file {unquote(escape)!r}" in no_file.json()["detail"]
    read_only = client.post("/v1/datasets/private/versions", headers=team.headers("read"))
    assert read_only.status_code == 403


def test_dataset_without_shards_cannot_be_snapshotted(client: Any, team: Team) -> None:
    client.post("/v1/jobs", json=spec(dataset="empty"), headers=team.headers())
    response = client.post("/v1/datasets/empty/versions", headers=team.headers())
    assert response.status_code == 409
    assert "no published documents" in response.json()["detail"]


@pytest.mark.usefixtures("llm")
def test_a_shard_missing_from_storage_is_a_503_problem_not_a_broken_body(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    base, entry = first_file(client, team, "damaged", settings, store, documents=2)
    path = entry["path"]
    (store.root / "teams" / str(team.id) / "datasets" / "damaged" / path).unlink()
    name = path.rsplit("/", 1)[-1]
    response = client.get(f"{base}/files/{name}", headers=team.headers())
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "missing" in response.json()["detail"]


def manifests_in(store: Any, team: Team, dataset: str) -> list[str]:
    folder = store.root / "teams" / str(team.id) / "datasets" / dataset / "manifests"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.usefixtures("llm")
def test_a_snapshot_of_unchanged_content_is_the_latest_version(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    publish(team, "steady", settings, store, documents=3)
    first = client.post("/v1/datasets/steady/versions", headers=team.headers())
    assert first.status_code == 201
    again = client.post("/v1/datasets/steady/versions", headers=team.headers())
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert again.headers["location"] == "/v1/datasets/steady/versions/1"
    assert len(manifests_in(store, team, "steady")) == 1

    more = run_local(team, spec(dataset="steady", documents=2, seed=7), settings, store)
    assert more.job.status == "succeeded", more.job.error
    grown = client.post("/v1/datasets/steady/versions", headers=team.headers())
    assert grown.status_code == 201
    assert (grown.json()["version"], grown.json()["records"]) == (2, 5)
    assert grown.headers["location"] == "/v1/datasets/steady/versions/2"
    listed = client.get("/v1/datasets/steady/versions", headers=team.headers()).json()
    assert [v["version"] for v in listed] == [1, 2]


def test_the_snapshot_route_documents_both_outcomes(client: Any) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/datasets/{name}/versions"]
    assert {"200", "201", "409"} <= set(operation["post"]["responses"])


@pytest.mark.usefixtures("llm")
def test_files_download_by_their_manifest_path(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    publish(team, "by-path", settings, store, documents=4)
    created = client.post("/v1/datasets/by-path/versions", headers=team.headers()).json()
    base = f"/v1/datasets/by-path/versions/{created['version']}"
    manifest = client.get(f"{base}/manifest", headers=team.headers()).json()
    entry = manifest["files"][0]
    assert entry["path"].startswith("documents/aligned/")

    url = f"{base}/files/{entry['path']}"  # the manifest's path, sent as it is
    served = client.get(url, headers=team.headers())
    assert served.status_code == 200, served.text
    assert hashlib.sha256(served.content).hexdigest() == entry["sha256"]
    head = client.head(url, headers=team.headers())
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == entry["bytes"]
    part = client.get(url, headers=team.headers(Range="bytes=0-9"))
    assert part.status_code == 206
    assert part.content == served.content[:10]
    by_name = client.get(f"{base}/files/{entry['path'].rsplit('/', 1)[-1]}", headers=team.headers())
    assert by_name.content == served.content

    digest = created["manifest_sha256"]
    for unknown in ("shards/nope.jsonl.zst", f"manifests/{digest}.json", "shards"):
        # The manifest object exists in the store, but only listed files are ever served.
        response = client.get(f"{base}/files/{unknown}", headers=team.headers())
        assert response.status_code == 404, unknown
        assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.usefixtures("llm")
def test_manifests_answer_head_and_ranges_like_files(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    publish(team, "ranged-manifest", settings, store, documents=2)
    client.post("/v1/datasets/ranged-manifest/versions", headers=team.headers())
    url = "/v1/datasets/ranged-manifest/versions/1/manifest"
    whole = client.get(url, headers=team.headers())
    sha = whole.headers["x-content-sha256"]
    head = client.head(url, headers=team.headers())
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(whole.content))
    assert (head.headers["etag"], head.headers["cache-control"]) == (f'"{sha}"', "immutable")
    part = client.get(url, headers=team.headers(Range="bytes=10-19"))
    assert part.status_code == 206
    assert part.content == whole.content[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(whole.content)}"
    assert part.headers["content-length"] == "10"
    stale = client.get(url, headers=team.headers(Range="bytes=10-19", **{"If-Range": '"old"'}))
    assert (stale.status_code, stale.content) == (200, whole.content)
    outside = client.get(url, headers=team.headers(Range=f"bytes={len(whole.content)}-"))
    assert outside.status_code == 416
