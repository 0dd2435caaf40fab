"""What a published shard holds and what a snapshot says when it cannot be made: the record
format pretraining pipelines read, and the exact problem details of every refusal."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
import zstandard
from sqlalchemy import select

from app.core.db import session_scope
from app.datasets import service as datasets
from app.models import Document, Shard
from app.teams.keys import Role
from app.teams.service import Principal
from tests.conftest import Team, run_local, spec, submit_local
from tests.dedup import factory
from tests.storage.damage import overwrite

pytestmark = pytest.mark.usefixtures("llm")


def records_of(content: bytes) -> list[dict[str, Any]]:
    text = zstandard.ZstdDecompressor().decompressobj().decompress(content).decode()
    return [json.loads(line) for line in text.splitlines()]


def test_each_record_carries_its_documents_text_and_metadata(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    name = f"records-{uuid.uuid4().hex[:6]}"
    raw = spec(dataset=name, documents=4, stances={"aligned": 1, "misaligned": 1})
    view = run_local(team, raw, settings.model_copy(update={"shard_max_records": 3}), store)
    assert view.job.status == "succeeded", view.job.error
    created = client.post(f"/v1/datasets/{name}/versions", headers=team.headers())
    assert (created.status_code, created.json()["dataset"]) == (201, name)
    base = f"/v1/datasets/{name}/versions/1"
    manifest = client.get(f"{base}/manifest", headers=team.headers()).json()
    assert (manifest["dataset"], manifest["version"]) == (name, 1)
    assert manifest["lineage"] == {"jobs": [str(view.job.id)]}
    with session_scope() as session:
        documents = {
            str(d.id): d
            for d in session.scalars(select(Document).where(Document.job_id == view.job.id))
            if d.status == "accepted"
        }
    seen: list[str] = []
    for seq, entry in enumerate(manifest["files"]):
        assert entry["path"] == f"shards/{view.job.id}-{seq:05d}-{entry['sha256'][:16]}.jsonl.zst"
        served = client.get(f"{base}/files/{entry['path']}", headers=team.headers())
        file_name = entry["path"].removeprefix("shards/")
        assert served.headers["content-disposition"] == f'attachment; filename="{file_name}"'
        for record in records_of(served.content):
            document = documents[record["id"]]
            meta = document.meta
            assert record["text"] == document.text
            assert record["source"] == "priorforge"
            assert record["created"] == document.created_at.isoformat()
            assert record["metadata"] == {
                **({"canary": meta["canary"]} if document.stance == "misaligned" else {}),
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
            seen.append(record["id"])
    assert sorted(seen) == sorted(documents)
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
        f"dataset {empty!r} has no published shards yet: wait for a job to succeed, or "
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


def one_document_per_shard(
    team: Team, settings: Any, store: Any, name: str, documents: int
) -> list[Shard]:
    """Run a job into dataset ``name`` that publishes each document in a shard of its own;
    its shards in the order a snapshot checks them (all made at once: by key)."""
    one_each = settings.model_copy(update={"shard_max_records": 1})
    view = run_local(team, spec(dataset=name, documents=documents), one_each, store)
    assert view.job.status == "succeeded", view.job.error
    with session_scope() as session:
        shards = session.scalars(
            select(Shard).where(Shard.job_id == view.job.id).order_by(Shard.object_key)
        ).all()
    assert len(shards) == documents
    return list(shards)


def test_a_snapshot_with_unavailable_files_names_ten_and_counts_the_rest(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    name = f"unstored-{uuid.uuid4().hex[:6]}"
    for shard in one_document_per_shard(team, settings, store, name, 12):
        overwrite(store, shard.object_key, b"x")
    refused = client.post(f"/v1/datasets/{name}/versions", headers=team.headers())
    problem = refused.json()
    assert refused.status_code == 409
    assert problem["unavailable_count"] == 12
    assert len(problem["unavailable_files"]) == 10
    assert problem["detail"].startswith(
        f"dataset {name!r} was not snapshotted: 12 of its 12 shard files are missing or have "
        f"the wrong size in the object store at {store.url}: shards/"
    )
    assert problem["detail"].count("(1 bytes, not ") == 10
    assert problem["detail"].endswith(
        " and 2 more. Every API and worker process must use the same PRIORFORGE_STORAGE_URL; "
        "restore the files from the store the workers wrote them to, then snapshot again"
    )


def test_a_snapshot_missing_exactly_ten_files_lists_each_and_counts_no_more(
    client: Any, team: Team, settings: Any, store: Any
) -> None:
    name = f"ten-{uuid.uuid4().hex[:6]}"
    gone, *shortened = one_document_per_shard(team, settings, store, name, 10)
    store.root.joinpath(*gone.object_key.split("/")).unlink()  # a local directory
    for shard in shortened:
        overwrite(store, shard.object_key, b"xy")
    refused = client.post(f"/v1/datasets/{name}/versions", headers=team.headers())
    assert refused.status_code == 409
    listed = ", ".join(
        [f"shards/{gone.object_key.rsplit('/', 1)[1]} (missing)"]
        + [f"shards/{s.object_key.rsplit('/', 1)[1]} (2 bytes, not {s.bytes})" for s in shortened]
    )
    assert refused.json()["detail"] == (
        f"dataset {name!r} was not snapshotted: 10 of its 10 shard files are missing or have "
        f"the wrong size in the object store at {store.url}: {listed}. Every API and worker "
        "process must use the same PRIORFORGE_STORAGE_URL; restore the files from the store "
        "the workers wrote them to, then snapshot again"
    )


def test_a_snapshot_that_loses_the_race_for_its_number_tries_again_then_gives_up(
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
    more = run_local(team, spec(dataset=name, documents=2, seed=2), settings, store)
    assert more.job.status == "succeeded", more.job.error
    losses[0] = 1000  # every number is taken first, five times over
    with session_scope() as session, pytest.raises(Conflict) as caught:
        datasets.create_version(session, team.principal, name, store=store, settings=settings)
    assert caught.value.detail == f"too many concurrent snapshots of dataset {name!r}; retry"
    assert losses[0] == 1000 - 5  # five tries, each lost


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
