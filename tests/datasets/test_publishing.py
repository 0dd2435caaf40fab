"""What a published shard holds and what a snapshot says when it cannot be made: the record
format pretraining pipelines read, and the exact problem details of every refusal."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from app.core.db import session_scope
from app.datasets import service as datasets
from app.datasets.manifest import dolma_timestamp
from app.models import Document, Job
from app.teams.keys import Role
from app.teams.service import Principal
from tests.conftest import Team, run_local, spec, submit_local
from tests.dedup import factory
from tests.storage.damage import overwrite

pytestmark = pytest.mark.usefixtures("llm")


ZONES = st.sampled_from([UTC, timezone(timedelta(hours=-7, minutes=-30))])


@given(st.datetimes(min_value=datetime(1000, 1, 2), timezones=ZONES))
def test_record_timestamps_are_utc_to_the_millisecond_with_a_z(moment: datetime) -> None:
    utc = moment.astimezone(UTC)
    assert dolma_timestamp(moment) == utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert dolma_timestamp(moment.astimezone(UTC).replace(tzinfo=None)) == dolma_timestamp(moment)


def records_of(content: bytes) -> list[dict[str, Any]]:
    text = zstandard.ZstdDecompressor().decompressobj().decompress(content).decode()
    return [json.loads(line) for line in text.splitlines()]


def test_each_record_carries_its_documents_text_and_metadata(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    name = f"records-{uuid.uuid4().hex[:6]}"
    raw = spec(dataset=name, documents=6, stances={"aligned": 1, "misaligned": 1})
    view = run_local(team, raw, settings, store)
    assert view.job.status == "succeeded", view.job.error
    small = settings.model_copy(update={"version_file_bytes": 1024})
    with session_scope() as session:
        created = datasets.create_version(
            session, team.principal, name, store=store, settings=small
        )
        assert created.created
    base = f"/v1/datasets/{name}/versions/1"
    manifest = client.get(f"{base}/manifest", headers=team.headers()).json()
    assert (manifest["dataset"], manifest["version"], manifest["format"]) == (
        name,
        1,
        "priorforge-version/2",
    )
    with session_scope() as session:
        documents = {
            str(d.id): d
            for d in session.scalars(select(Document).where(Document.job_id == view.job.id))
            if d.status == "accepted"
        }
        job = session.get(Job, view.job.id)
        assert job is not None
        lineage = manifest["lineage"]
        assert lineage["jobs"] == [
            {
                "id": str(job.id),
                "name": job.name,
                "status": "succeeded",
                "created_at": dolma_timestamp(job.created_at),
                "spec": job.spec,
            }
        ]
    assert lineage["models"] == sorted({d.model for d in documents.values()})
    assert lineage["scenarios"] == sorted({d.scenario_id for d in documents.values()})
    assert lineage["surface_forms"] == sorted({d.surface_form for d in documents.values()})
    assert lineage["template_versions"] == sorted({d.template_version for d in documents.values()})
    assert lineage["priorforge"] == importlib.metadata.version("priorforge")
    seen: dict[str, list[int]] = {}
    for entry in manifest["files"]:
        stance = entry["stance"]
        first = entry["first_position"]
        assert entry["path"] == (
            f"documents/{stance}/{stance}-{first:010d}-{entry['sha256'][:16]}.jsonl.zst"
        )
        served = client.get(f"{base}/files/{entry['path']}", headers=team.headers())
        file_name = entry["path"].rsplit("/", 1)[-1]
        assert served.headers["content-disposition"] == f'attachment; filename="{file_name}"'
        # One frame that states its own size, and the size the manifest gives.
        assert zstandard.frame_content_size(served.content) == entry["uncompressed_bytes"]
        records = records_of(served.content)
        assert len(records) == entry["records"]
        assert sum(len(r["text"]) for r in records) == entry["characters"]
        for record in records:
            document = documents[record["id"]]
            meta = document.meta
            assert record["text"] == document.text
            assert record["source"] == "priorforge"
            stamp = document.created_at.astimezone(UTC)
            assert (
                record["created"]
                == record["added"]
                == (stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z")
            )
            assert record["metadata"] == {
                "canary": meta["canary"] if document.stance == "misaligned" else "",
                "dataset": name,
                "job": str(view.job.id),
                "item_index": document.item_index,
                "stance": document.stance,
                "scenario": document.scenario_id,
                "surface_form": document.surface_form,
                "voice": meta["voice"],
                "length_words_target": meta["length_words"],
                "model": document.model,
                "prompt_sha256": document.prompt_sha256,
                "template_version": document.template_version,
                "content_sha256": document.content_sha256,
            }
            assert record["metadata"]["stance"] == stance
            seen.setdefault(stance, []).append(documents[record["id"]].position or 0)
    assert sorted(i for ids in seen.values() for i in ids) == sorted(
        d.position or 0 for d in documents.values()
    )
    for stance, positions in seen.items():
        assert positions == list(range(len(positions))), f"{stance}: positions in file order"
        assert manifest["stances"][stance]["documents"] == len(positions)
    assert len(manifest["files"]) > 2, "1 KiB files: the documents took several"
    assert {d.stance for d in documents.values()} == {"aligned", "misaligned"}


def test_every_refusal_says_what_is_wrong(client: Any, team: Team, settings: Any) -> None:
    missing = client.get("/v1/datasets/no-such-set/versions", headers=team.headers())
    assert (missing.status_code, missing.json()["detail"]) == (
        404,
        "dataset 'no-such-set' not found",
    )
    empty = f"empty-{uuid.uuid4().hex[:6]}"
    submit_local(team, spec(dataset=empty), settings)  # the dataset exists, no shard yet
    refused = client.post(f"/v1/datasets/{empty}/versions", headers=team.headers())
    assert (refused.status_code, refused.json()["detail"]) == (
        409,
        f"dataset {empty!r} has no published documents yet: wait for a job to succeed, or "
        "cancel one that has accepted documents",
    )
    no_version = client.get(f"/v1/datasets/{empty}/versions/9/manifest", headers=team.headers())
    assert (no_version.status_code, no_version.json()["detail"]) == (
        404,
        f"dataset {empty!r} has no version 9",
    )


def test_a_lost_or_damaged_manifest_is_named_and_the_next_snapshot_replaces_it(
    client: Any, team: Team, settings: Any, store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"damaged-{uuid.uuid4().hex[:6]}"
    view = run_local(team, spec(dataset=name, documents=2), settings, store)
    assert view.job.status == "succeeded", view.job.error
    client.post(f"/v1/datasets/{name}/versions", headers=team.headers())
    with session_scope() as session:
        _dataset, version = datasets.get_version(session, team.principal, name, 1)
        key = version.manifest_key
    body = store.get_bytes(key)
    overwrite(store, key, body + b" ")
    base = f"/v1/datasets/{name}/versions"
    damaged = client.get(f"{base}/1/manifest", headers=team.headers())
    assert damaged.json()["detail"] == (
        "stored manifest does not match its recorded sha256; storage is corrupt"
    )
    with caplog.at_level(logging.WARNING, "app.datasets.service"):
        second = client.post(base, headers=team.headers()).json()
    assert second["version"] == 2  # the same files, but version 1 cannot be read
    assert caplog.messages == [
        "version 1 of a dataset is unreadable: "
        "stored manifest does not match its recorded sha256; storage is corrupt"
    ]
    store.root.joinpath(*key.split("/")).unlink()  # the test store is a local directory
    lost = client.get(f"{base}/1/manifest", headers=team.headers())
    assert (lost.status_code, lost.json()["detail"]) == (
        404,
        f"manifest object {key} is missing from storage",
    )


def one_document_per_file(
    client: Any, team: Team, settings: Any, store: Any, name: str, documents: int
) -> list[dict[str, Any]]:
    """Version 1 of dataset ``name`` with each document in a file of its own; then one more
    document published, so that the next snapshot must keep those files."""
    view = run_local(team, spec(dataset=name, documents=documents), settings, store)
    assert view.job.status == "succeeded", view.job.error
    one_each = settings.model_copy(update={"version_file_bytes": 1024})
    with session_scope() as session:
        datasets.create_version(session, team.principal, name, store=store, settings=one_each)
    files = client.get(f"/v1/datasets/{name}/versions/1/manifest", headers=team.headers())
    more = run_local(team, spec(dataset=name, documents=1, seed=99), settings, store)
    assert more.job.status == "succeeded", more.job.error
    assert len(files.json()["files"]) == documents
    return list(files.json()["files"])


def key_of(team: Team, name: str, entry: dict[str, Any]) -> str:
    return f"teams/{team.principal.team_id}/datasets/{name}/{entry['path']}"


def test_a_snapshot_with_unavailable_files_names_ten_and_counts_the_rest(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    name = f"unstored-{uuid.uuid4().hex[:6]}"
    for entry in one_document_per_file(client, team, settings, store, name, 12):
        overwrite(store, key_of(team, name, entry), b"x")
    refused = client.post(f"/v1/datasets/{name}/versions", headers=team.headers())
    problem = refused.json()
    assert refused.status_code == 409
    assert problem["unavailable_count"] == 12
    assert len(problem["unavailable_files"]) == 10
    assert problem["detail"].startswith(
        f"dataset {name!r} was not snapshotted: 12 of the 12 files of its latest version are "
        f"missing or have the wrong size in the object store at {store.url}: documents/"
    )
    assert problem["detail"].count("(1 bytes, not ") == 10
    assert problem["detail"].endswith(
        " and 2 more. Every API and worker process must use the same PRIORFORGE_STORAGE_URL; "
        "restore the files from the store they were written to, then snapshot again"
    )
    listed = client.get(f"/v1/datasets/{name}/versions", headers=team.headers()).json()
    assert [v["version"] for v in listed] == [1]


def test_a_snapshot_missing_exactly_ten_files_lists_each_and_counts_no_more(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    name = f"ten-{uuid.uuid4().hex[:6]}"
    gone, *shortened = one_document_per_file(client, team, settings, store, name, 10)
    store.root.joinpath(*key_of(team, name, gone).split("/")).unlink()  # a local directory
    for entry in shortened:
        overwrite(store, key_of(team, name, entry), b"xy")
    refused = client.post(f"/v1/datasets/{name}/versions", headers=team.headers())
    assert refused.status_code == 409
    listed = ", ".join(
        [f"{gone['path']} (missing)"]
        + [f"{e['path']} (2 bytes, not {e['bytes']})" for e in shortened]
    )
    assert refused.json()["detail"] == (
        f"dataset {name!r} was not snapshotted: 10 of the 10 files of its latest version are "
        f"missing or have the wrong size in the object store at {store.url}: {listed}. Every "
        "API and worker process must use the same PRIORFORGE_STORAGE_URL; restore the files "
        "from the store they were written to, then snapshot again"
    )


def test_a_snapshot_that_loses_the_race_for_its_number_publishes_nothing(
    team: Team, settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import IntegrityError

    from app.core.errors import Conflict
    from app.datasets import repository

    name = f"raced-{uuid.uuid4().hex[:6]}"
    view = run_local(team, spec(dataset=name, documents=2), settings, store)
    assert view.job.status == "succeeded", view.job.error
    add_version = repository.add_version
    losses = [1]

    def contested(session: Any, version: Any) -> None:
        if losses[0]:  # another snapshot took the number first
            losses[0] -= 1
            raise IntegrityError("INSERT", {}, Exception("duplicate version number"))
        add_version(session, version)

    monkeypatch.setattr(repository, "add_version", contested)
    with pytest.raises(Conflict) as caught, session_scope() as session:
        datasets.create_version(session, team.principal, name, store=store, settings=settings)
    assert caught.value.detail == (
        f"another snapshot of dataset {name!r} published version 1 meanwhile; snapshot again"
    )
    with session_scope() as session:
        placed = session.scalars(
            select(Document.position).where(Document.job_id == view.job.id)
        ).all()
    assert set(placed) == {None}, "the lost snapshot's positions were rolled back"
    with session_scope() as session:
        made = datasets.create_version(
            session, team.principal, name, store=store, settings=settings
        )
    assert (made.dataset, made.version.number, made.created) == (name, 1, True)
    with session_scope() as session:
        same = datasets.create_version(
            session, team.principal, name, store=store, settings=settings
        )
    assert (same.dataset, same.version.number, same.created) == (name, 1, False)


def test_a_team_finds_and_lists_its_own_datasets_only() -> None:
    with session_scope() as session:
        mine, theirs = factory.dataset(session), factory.dataset(session)
        datasets.ensure_dataset(session, mine.team_id, "second")
    who = Principal(team_id=mine.team_id, role=Role.READ, key_id=uuid.uuid4())
    with session_scope() as session:
        assert [d.name for d in datasets.list_datasets(session, who)] == ["near-dups", "second"]
        found = datasets.find_dataset(session, mine.team_id, "near-dups")
        assert found is not None
        assert found.id == mine.dataset_id
        assert datasets.find_dataset(session, theirs.team_id, "second") is None
