"""Datasets: publishing a job's accepted documents as shards, and immutable versions."""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.errors import Conflict, NotFound, ServiceUnavailable
from app.core.settings import Settings
from app.datasets import repository
from app.datasets.manifest import ManifestFile, build_manifest, dolma_record, sha256_hex
from app.datasets.shards import batched_by_size, write_shard
from app.models import Dataset, DatasetVersion, Document, Job
from app.models.base import utcnow
from app.storage import ObjectNotFound, ObjectStore
from app.teams.service import Principal


def ensure_dataset(session: Session, team_id: uuid.UUID, name: str) -> Dataset:
    dataset = repository.find_dataset(session, team_id, name)
    if dataset is None:
        repository.insert_dataset(session, team_id, name)
        dataset = repository.find_dataset(session, team_id, name)
    assert dataset is not None
    return dataset


def find_dataset(session: Session, team_id: uuid.UUID, name: str) -> Dataset | None:
    return repository.find_dataset(session, team_id, name)


def require_dataset(session: Session, principal: Principal, name: str) -> Dataset:
    dataset = repository.find_dataset(session, principal.team_id, name)
    if dataset is None:
        raise NotFound(f"dataset {name!r} not found")
    return dataset


def list_datasets(session: Session, principal: Principal) -> list[Dataset]:
    return list(repository.list_datasets(session, principal.team_id))


def dataset_prefix(dataset: Dataset) -> str:
    return f"teams/{dataset.team_id}/datasets/{dataset.name}"


def _metadata(document: Document, dataset: Dataset) -> dict[str, Any]:
    meta = document.meta or {}
    canary = {"canary": meta["canary"]} if "canary" in meta else {}
    return canary | {
        "dataset": dataset.name,
        "job": str(document.job_id),
        "item_index": document.item_index,
        "stance": document.stance,
        "scenario": document.scenario_id,
        "surface_form": document.surface_form,
        "voice": meta.get("voice"),
        "length_words_target": meta.get("length_words"),
        "model": document.model,
        "prompt_sha256": document.prompt_sha256,
        "template_version": document.template_version,
        "content_sha256": document.content_sha256,
    }


@dataclass(frozen=True)
class _Uploaded:
    seq: int
    key: str
    sha256: str
    bytes: int
    records: int
    first_index: int
    last_index: int


def publish_job(
    session: Session,
    job: Job,
    *,
    store: ObjectStore,
    settings: Settings,
    renew: Callable[[], None] = lambda: None,
) -> int:
    """Write the job's accepted documents as shards and record them (not yet committed).

    First every file is uploaded, reading documents in batches and writing nothing to the
    database, so no write lock is held while bytes move (SQLite has one writer). Each key
    contains the file's sha256: two publishers can never overwrite each other's bytes.
    ``renew`` runs after each file to keep the caller's claim alive, raising if it was lost.
    Then the rows naming the files are added; the caller commits them with the job's state.
    """
    if repository.job_shards(session, job.id):
        return 0
    dataset = session.get(Dataset, job.dataset_id)
    assert dataset is not None
    added = repository.last_accepted_at(session, job.id)
    if added is None:
        return 0
    records = (
        dolma_record(
            document_id=str(d.id),
            text=d.text or "",
            added=added,
            created=d.created_at,
            metadata=_metadata(d, dataset),
        )
        for d in repository.stream_accepted_documents(session, job.id)
    )
    uploaded: list[_Uploaded] = []
    with tempfile.TemporaryDirectory(prefix="priorforge-shard-") as tmp:
        batches = batched_by_size(records, settings.shard_max_records, settings.shard_max_bytes)
        for seq, batch in enumerate(batches):
            shard = write_shard(batch, Path(tmp) / f"{seq:05d}.jsonl.zst")
            name = f"{job.id}-{seq:05d}-{shard.sha256[:16]}.jsonl.zst"
            key = f"{dataset_prefix(dataset)}/shards/{name}"
            store.put_file(key, shard.path)
            shard.path.unlink()
            indices = [record["metadata"]["item_index"] for record in batch]
            uploaded.append(
                _Uploaded(
                    seq, key, shard.sha256, shard.bytes, shard.records, indices[0], indices[-1]
                )
            )
            renew()
    now = utcnow()
    for file in uploaded:
        shard_id = uuid.uuid4()
        repository.add_shard(
            session,
            {
                "id": shard_id,
                "dataset_id": dataset.id,
                "job_id": job.id,
                "seq": file.seq,
                "object_key": file.key,
                "sha256": file.sha256,
                "bytes": file.bytes,
                "records": file.records,
                "committed": True,
                "created_at": now,
            },
        )
        repository.assign_shard(session, job.id, file.first_index, file.last_index, shard_id)
    return len(uploaded)


@dataclass(frozen=True)
class VersionView:
    dataset: str
    version: DatasetVersion


def create_version(
    session: Session, principal: Principal, name: str, *, store: ObjectStore
) -> VersionView:
    """Snapshot every committed shard of the dataset into a new immutable version."""
    dataset = require_dataset(session, principal, name)
    shards = repository.committed_shards(session, dataset.id)
    if not shards:
        raise Conflict(
            f"dataset {name!r} has no published shards yet: wait for a job to succeed",
        )
    files = [
        ManifestFile(
            path=f"shards/{PurePosixPath(s.object_key).name}",
            bytes=s.bytes,
            sha256=s.sha256,
            records=s.records,
            job=str(s.job_id),
        )
        for s in shards
    ]
    for _attempt in range(5):
        number = repository.latest_version_number(session, dataset.id) + 1
        body = build_manifest(dataset=name, version=number, created=utcnow(), files=files)
        digest = sha256_hex(body)
        # Content-addressed key: two racing snapshots can never overwrite each other's bytes.
        key = f"{dataset_prefix(dataset)}/manifests/{digest}.json"
        store.put_bytes(key, body)
        version = DatasetVersion(
            dataset_id=dataset.id,
            number=number,
            manifest_key=key,
            manifest_sha256=digest,
            files=len(files),
            records=sum(f.records for f in files),
            bytes=sum(f.bytes for f in files),
        )
        try:
            with session.begin_nested():
                repository.add_version(session, version)
        except IntegrityError:
            continue
        return VersionView(dataset=name, version=version)
    raise Conflict(f"too many concurrent snapshots of dataset {name!r}; retry")


def list_versions(session: Session, principal: Principal, name: str) -> list[DatasetVersion]:
    dataset = require_dataset(session, principal, name)
    return list(repository.list_versions(session, dataset.id))


def get_version(
    session: Session, principal: Principal, name: str, number: int
) -> tuple[Dataset, DatasetVersion]:
    dataset = require_dataset(session, principal, name)
    version = repository.get_version(session, dataset.id, number)
    if version is None:
        raise NotFound(f"dataset {name!r} has no version {number}")
    return dataset, version


def read_manifest(store: ObjectStore, version: DatasetVersion) -> bytes:
    try:
        body = store.get_bytes(version.manifest_key)
    except ObjectNotFound as exc:
        raise NotFound(f"manifest object {version.manifest_key} is missing from storage") from exc
    if sha256_hex(body) != version.manifest_sha256:
        raise Conflict("stored manifest does not match its recorded sha256; storage is corrupt")
    return body


@dataclass(frozen=True)
class FileRef:
    key: str
    name: str
    bytes: int
    sha256: str
    records: int


def find_file(store: ObjectStore, dataset: Dataset, version: DatasetVersion, name: str) -> FileRef:
    manifest = json.loads(read_manifest(store, version))
    for entry in manifest["files"]:
        if PurePosixPath(entry["path"]).name == name:
            return FileRef(
                key=f"{dataset_prefix(dataset)}/{entry['path']}",
                name=name,
                bytes=entry["bytes"],
                sha256=entry["sha256"],
                records=entry["records"],
            )
    raise NotFound(f"version {version.number} of dataset {dataset.name!r} has no file {name!r}")


def check_stored(store: ObjectStore, ref: FileRef) -> None:
    try:
        size = store.stat(ref.key).size
    except ObjectNotFound as exc:
        raise ServiceUnavailable(f"shard {ref.name} is missing from object storage") from exc
    if size != ref.bytes:
        raise ServiceUnavailable(
            f"shard {ref.name} in storage has {size} bytes, the manifest says {ref.bytes}"
        )
