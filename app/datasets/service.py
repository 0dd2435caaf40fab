"""Datasets: publishing a job's accepted documents as shards, and immutable versions."""

from __future__ import annotations

import json
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.errors import Conflict, NotFound
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
    return {
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


def publish_job(session: Session, job: Job, *, store: ObjectStore, settings: Settings) -> int:
    """Write the job's accepted documents as shards and record them (not yet committed).

    Shard bytes are a pure function of the stored rows, so a second publisher after a crash
    writes identical files under the same keys. Files are uploaded before the rows that name
    them; the caller commits the rows together with the job's final state.
    """
    if repository.job_shards(session, job.id):
        return 0
    dataset = session.get(Dataset, job.dataset_id)
    assert dataset is not None
    documents = list(repository.accepted_documents(session, job.id))
    if not documents:
        return 0
    added = max(d.created_at for d in documents)
    records = (
        (
            d.id,
            dolma_record(
                document_id=str(d.id),
                text=d.text or "",
                added=added,
                created=d.created_at,
                metadata=_metadata(d, dataset),
            ),
        )
        for d in documents
    )
    written = 0
    with tempfile.TemporaryDirectory(prefix="priorforge-shard-") as tmp:
        for seq, batch in enumerate(
            batched_by_size(
                (record | {"_id": doc_id} for doc_id, record in records),
                settings.shard_max_records,
                settings.shard_max_bytes,
            )
        ):
            ids = [record.pop("_id") for record in batch]
            name = f"{job.id}-{seq:05d}.jsonl.zst"
            shard = write_shard(batch, Path(tmp) / name)
            key = f"{dataset_prefix(dataset)}/shards/{name}"
            store.put_file(key, shard.path)
            repository.add_shard(
                session,
                {
                    "id": uuid.uuid4(),
                    "dataset_id": dataset.id,
                    "job_id": job.id,
                    "seq": seq,
                    "object_key": key,
                    "sha256": shard.sha256,
                    "bytes": shard.bytes,
                    "records": shard.records,
                    "committed": True,
                    "created_at": utcnow(),
                },
            )
            shard_id = repository.shard_id_for_key(session, key)
            assert shard_id is not None
            repository.assign_shard(session, ids, shard_id)
            written += 1
    return written


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
