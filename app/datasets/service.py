"""Datasets: publishing a job's accepted documents as shards, and immutable versions."""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.errors import Conflict, NotFound, ServiceUnavailable
from app.core.settings import Settings
from app.datasets import repository
from app.datasets.compaction import PackedFile, pack
from app.datasets.manifest import (
    FORMAT,
    ManifestFile,
    build_manifest,
    dolma_record,
    dolma_timestamp,
    sha256_hex,
)
from app.datasets.shards import batched_by_size, write_shard
from app.models import Dataset, DatasetVersion, Document, Job
from app.models.base import utcnow
from app.storage import ObjectNotFound, ObjectStore, put_content_addressed
from app.teams.service import Principal, find_team

log = logging.getLogger(__name__)


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


def list_readable(session: Session, principal: Principal) -> list[tuple[Dataset, str]]:
    """The team's datasets and those other teams shared with it, with their owners' names."""
    return list(repository.readable_datasets(session, principal.team_id))


def readable_dataset(
    session: Session, principal: Principal, name: str, owner: str | None
) -> Dataset:
    """The team's dataset ``name``, or with ``owner`` that team's, if it shared it; another
    team's dataset that is not shared is as absent as one that does not exist."""
    if owner is None:
        return require_dataset(session, principal, name)
    try:
        team = find_team(session, owner)
    except NotFound:
        team = None
    dataset = repository.find_dataset(session, team.id, name) if team is not None else None
    if dataset is None or (
        dataset.team_id != principal.team_id
        and not repository.is_shared(session, dataset.id, principal.team_id)
    ):
        raise NotFound(f"dataset {name!r} of team {owner!r} not found (or not shared with you)")
    return dataset


def share_dataset(session: Session, principal: Principal, name: str, team: str) -> bool:
    """Let ``team`` read the dataset; True if it could not before."""
    dataset = require_dataset(session, principal, name)
    reader = find_team(session, team)
    if reader.id == principal.team_id:
        raise Conflict(f"dataset {name!r} is your team's own: share it with another team")
    return repository.add_share(session, dataset.id, reader.id)


def unshare_dataset(session: Session, principal: Principal, name: str, team: str) -> None:
    dataset = require_dataset(session, principal, name)
    reader = find_team(session, team)
    if not repository.remove_share(session, dataset.id, reader.id):
        raise NotFound(f"dataset {name!r} is not shared with team {team!r}")


def list_shares(session: Session, principal: Principal, name: str) -> list[tuple[str, datetime]]:
    dataset = require_dataset(session, principal, name)
    return list(repository.list_shares(session, dataset.id))


def dataset_prefix(dataset: Dataset) -> str:
    return f"teams/{dataset.team_id}/datasets/{dataset.name}"


def _metadata(document: Row[Any], dataset: Dataset) -> dict[str, Any]:
    meta = document.meta or {}
    # Every record has every field, with one type: readers that infer a schema from the first
    # file (HF datasets) must not meet a field, or a null, that a later file contradicts.
    return {
        "canary": meta.get("canary") or "",
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
    document_ids: list[uuid.UUID]


def publish_job(
    session: Session,
    job: Job,
    *,
    store: ObjectStore,
    settings: Settings,
    renew: Callable[[], None] = lambda: None,
) -> None:
    """Write the job's accepted documents that are in no shard yet as new shards of the job.

    A job that succeeded publishes all its documents at once; a cancelled job's are published
    by snapshots, continuing its shard numbers. First every file is uploaded, reading
    documents in batches and writing nothing to the database, so no write lock is held while
    bytes move (SQLite has one writer). Each key contains the file's sha256: two publishers
    can never overwrite each other's bytes. ``renew`` runs after each file to keep the
    caller's claim alive, raising if it was lost. Then the rows naming the files are added;
    the caller commits them (with the job's state).
    """
    dataset = session.get(Dataset, job.dataset_id)
    assert dataset is not None
    added = repository.last_unpublished_at(session, job.id)
    if added is None:
        return
    first_seq = repository.next_shard_seq(session, job.id)
    records = (
        dolma_record(
            document_id=str(d.id),
            text=d.text or "",
            added=added,
            created=d.created_at,
            metadata=_metadata(d, dataset),
        )
        for d in repository.stream_unpublished_documents(session, job.id)
    )
    uploaded: list[_Uploaded] = []
    with tempfile.TemporaryDirectory(prefix="priorforge-shard-") as tmp:
        batches = batched_by_size(records, settings.shard_max_records, settings.shard_max_bytes)
        for seq, batch in enumerate(batches, start=first_seq):
            shard = write_shard(batch, Path(tmp) / f"{seq:05d}.jsonl.zst")
            name = f"{job.id}-{seq:05d}-{shard.sha256[:16]}.jsonl.zst"
            key = f"{dataset_prefix(dataset)}/shards/{name}"
            put_content_addressed(store, key, shard.path)
            shard.path.unlink()
            ids = [uuid.UUID(record["id"]) for record in batch]
            uploaded.append(_Uploaded(seq, key, shard.sha256, shard.bytes, shard.records, ids))
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
        repository.assign_shard(session, shard_id, file.document_ids)


def publish_cancelled_jobs(
    session: Session, dataset: Dataset, *, store: ObjectStore, settings: Settings
) -> None:
    """Publish the accepted documents of the dataset's cancelled jobs that are in no shard.

    Each job's row is locked first, until the caller commits: a concurrent snapshot waits,
    then finds those documents sharded and publishes nothing, so no document is ever put in
    two shards.
    """
    for job_id in repository.cancelled_jobs_with_unpublished_documents(session, dataset.id):
        if not repository.lock_cancelled_job(session, job_id):
            continue
        job = session.get(Job, job_id)
        assert job is not None
        publish_job(session, job, store=store, settings=settings)


@dataclass(frozen=True)
class VersionView:
    dataset: str
    version: DatasetVersion
    created: bool = True


# How many unavailable files a failed snapshot names (the count covers them all).
LISTED_FILES = 10


def create_version(
    session: Session,
    principal: Principal,
    name: str,
    *,
    store: ObjectStore,
    settings: Settings,
) -> VersionView:
    """Compact the dataset's published documents into an immutable version.

    Each stance's documents are packed in position order into files near
    ``settings.version_file_bytes`` (uncompressed) under ``documents/<stance>/``: documents
    no version holds yet get the next positions (by job, oldest first, then item), full files
    of the latest version are kept as they are, and only its last, unfilled file of a stance
    that grows is re-packed. Every file is in the store before the manifest that names it,
    and the manifest before the version row: a snapshot stopped at any point leaves no
    version. When nothing was published since the latest version, that version is returned
    (``created`` False) instead of minting a new number.
    """
    dataset = require_dataset(session, principal, name)
    publish_cancelled_jobs(session, dataset, store=store, settings=settings)
    repository.lock_dataset(session, dataset.id)
    latest = repository.latest_version(session, dataset.id)
    kept = _files_of(store, latest)
    growing = set(repository.stances_to_place(session, dataset.id))
    if latest is not None and kept is not None and not growing:
        return VersionView(dataset=name, version=latest, created=False)
    placed = repository.placed_counts(session, dataset.id)
    if not growing and not placed:
        raise Conflict(
            f"dataset {name!r} has no published documents yet: wait for a job to succeed, or "
            "cancel one that has accepted documents",
        )
    _require_stored(store, dataset, kept or [])
    by_stance: dict[str, list[ManifestFile]] = {}
    for file in kept or []:
        by_stance.setdefault(file.stance, []).append(file)
    placements: list[tuple[uuid.UUID, int]] = []
    files: list[ManifestFile] = []
    with tempfile.TemporaryDirectory(prefix="priorforge-version-") as tmp:
        for stance in sorted(growing | set(placed) | set(by_stance)):
            current = by_stance.get(stance, [])
            repack_from: int | None = None
            if kept is None:
                repack_from = 0  # no usable latest manifest: every file is written again
            elif (
                stance in growing
                and current
                and (current[-1].uncompressed_bytes < settings.version_file_bytes)
            ):
                repack_from = current.pop().first_position
            if stance in growing or repack_from is not None:
                records = _records(
                    session,
                    dataset,
                    stance,
                    repack_from=repack_from,
                    next_position=placed.get(stance, 0),
                    placements=placements,
                )
                for packed in pack(
                    records,
                    stance=stance,
                    target_bytes=settings.version_file_bytes,
                    directory=Path(tmp),
                ):
                    current.append(_upload(store, dataset, packed))
            files.extend(current)
    repository.place(session, placements)
    number = (latest.number if latest else 0) + 1
    body = build_manifest(
        dataset=name,
        version=number,
        created=utcnow(),
        files=files,
        lineage=_lineage(session, dataset),
    )
    digest = sha256_hex(body)
    # Content-addressed: no two manifests can ever share a key.
    key = f"{dataset_prefix(dataset)}/manifests/{digest}.json"
    put_content_addressed(store, key, body)
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
        raise Conflict(
            f"another snapshot of dataset {name!r} published version {number} meanwhile; "
            "snapshot again"
        ) from None
    return VersionView(dataset=name, version=version)


def _files_of(store: ObjectStore, version: DatasetVersion | None) -> list[ManifestFile] | None:
    """The latest version's files; None when they cannot be kept (its manifest is lost or
    damaged, or predates compaction), so that every file is written again."""
    if version is None:
        return []
    try:
        manifest = json.loads(read_manifest(store, version))
    except (NotFound, Conflict) as exc:
        # The latest manifest is lost or damaged: a new version with a sound one replaces it.
        log.warning("version %s of a dataset is unreadable: %s", version.number, exc)
        return None
    if manifest.get("format") != FORMAT:
        return None
    return [ManifestFile.from_entry(entry) for entry in manifest["files"]]


def _records(
    session: Session,
    dataset: Dataset,
    stance: str,
    *,
    repack_from: int | None,
    next_position: int,
    placements: list[tuple[uuid.UUID, int]],
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(position, record) for a stance's re-packed documents, then its new ones."""
    if repack_from is not None:
        for document in repository.stream_placed(session, dataset.id, stance, repack_from):
            assert document.position is not None
            yield document.position, _record(document, dataset)
    position = next_position
    for document in repository.stream_unplaced(session, dataset.id, stance):
        placements.append((document.id, position))
        yield position, _record(document, dataset)
        position += 1


def _record(document: Row[Any], dataset: Dataset) -> dict[str, Any]:
    return dolma_record(
        document_id=str(document.id),
        text=document.text or "",
        added=document.created_at,
        created=document.created_at,
        metadata=_metadata(document, dataset),
    )


def _upload(store: ObjectStore, dataset: Dataset, packed: PackedFile) -> ManifestFile:
    path = (
        f"documents/{packed.stance}/{packed.stance}-{packed.first:010d}-"
        f"{packed.sha256[:16]}.jsonl.zst"
    )
    put_content_addressed(store, f"{dataset_prefix(dataset)}/{path}", packed.path)
    packed.path.unlink()
    return ManifestFile(
        path=path,
        stance=packed.stance,
        first_position=packed.first,
        records=packed.records,
        characters=packed.characters,
        bytes=packed.bytes,
        uncompressed_bytes=packed.uncompressed_bytes,
        sha256=packed.sha256,
    )


def _lineage(session: Session, dataset: Dataset) -> dict[str, Any]:
    """Everything that made the version's documents: jobs with their specs (models, prompts,
    gates, dedup, decontamination, judge), and the distinct values the documents carry."""
    values = partial(repository.lineage_values, session, dataset.id)
    return {
        "priorforge": _priorforge_version(),
        "jobs": [
            {
                "id": str(job.id),
                "name": job.name,
                "status": job.status,
                "created_at": dolma_timestamp(job.created_at),
                "spec": job.spec,
            }
            for job in repository.placed_jobs(session, dataset.id)
        ],
        "models": values(Document.model),
        "template_versions": values(Document.template_version),
        "scenarios": values(Document.scenario_id),
        "surface_forms": values(Document.surface_form),
    }


def _priorforge_version() -> str:
    try:
        return metadata.version("priorforge")
    except metadata.PackageNotFoundError:
        return "unknown"


def _require_stored(store: ObjectStore, dataset: Dataset, files: list[ManifestFile]) -> None:
    """Name no file in a new manifest whose bytes are not all in the store."""
    unavailable: list[dict[str, Any]] = []
    for file in files:
        try:
            stored: int | None = store.stat(f"{dataset_prefix(dataset)}/{file.path}").size
        except ObjectNotFound:
            stored = None
        if stored != file.bytes:
            unavailable.append({"path": file.path, "bytes": file.bytes, "stored_bytes": stored})
    if not unavailable:
        return
    listed = ", ".join(
        f"{f['path']} (missing)"
        if f["stored_bytes"] is None
        else f"{f['path']} ({f['stored_bytes']} bytes, not {f['bytes']})"
        for f in unavailable[:LISTED_FILES]
    )
    more = f" and {len(unavailable) - LISTED_FILES} more" if len(unavailable) > LISTED_FILES else ""
    raise Conflict(
        f"dataset {dataset.name!r} was not snapshotted: {len(unavailable)} of the "
        f"{len(files)} files of its latest version are missing or have the wrong size in the "
        f"object store at {store.url}: {listed}{more}. Every API and worker process must use "
        "the same PRIORFORGE_STORAGE_URL; restore the files from the store they were written "
        "to, then snapshot again",
        unavailable_files=unavailable[:LISTED_FILES],
        unavailable_count=len(unavailable),
    )


@dataclass(frozen=True)
class VersionDiff:
    dataset: str
    since: int
    version: int
    files_added: list[str]
    files_removed: list[str]
    # Per stance, the positions [start, end) each side holds that the other does not.
    documents_added: dict[str, tuple[int, int]]
    documents_removed: dict[str, tuple[int, int]]


def diff_versions(
    session: Session,
    principal: Principal,
    name: str,
    number: int,
    since: int,
    *,
    store: ObjectStore,
    owner: str | None = None,
) -> VersionDiff:
    """What version ``number`` holds that version ``since`` did not, and the reverse: files
    by path, documents as position ranges per stance (positions never change, so two
    versions differ only at the end of each stance's range)."""
    spans: list[dict[str, int]] = []
    paths: list[set[str]] = []
    for which in (since, number):
        _dataset, version = get_version(session, principal, name, which, owner)
        manifest = json.loads(read_manifest(store, version))
        if manifest.get("format") != FORMAT:
            raise Conflict(
                f"version {which} of dataset {name!r} predates compacted versions (its files "
                "are not position ranges): diff versions made since"
            )
        files = [ManifestFile.from_entry(entry) for entry in manifest["files"]]
        ends: dict[str, int] = {}
        for file in files:
            ends[file.stance] = max(ends.get(file.stance, 0), file.end_position)
        spans.append(ends)
        paths.append({file.path for file in files})
    before, after = spans

    def beyond(mine: dict[str, int], theirs: dict[str, int]) -> dict[str, tuple[int, int]]:
        return {
            stance: (theirs.get(stance, 0), end)
            for stance, end in sorted(mine.items())
            if end > theirs.get(stance, 0)
        }

    return VersionDiff(
        dataset=name,
        since=since,
        version=number,
        files_added=sorted(paths[1] - paths[0]),
        files_removed=sorted(paths[0] - paths[1]),
        documents_added=beyond(after, before),
        documents_removed=beyond(before, after),
    )


def list_versions(
    session: Session, principal: Principal, name: str, owner: str | None = None
) -> list[DatasetVersion]:
    dataset = readable_dataset(session, principal, name, owner)
    return list(repository.list_versions(session, dataset.id))


def get_version(
    session: Session, principal: Principal, name: str, number: int, owner: str | None = None
) -> tuple[Dataset, DatasetVersion]:
    dataset = readable_dataset(session, principal, name, owner)
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


def find_file(store: ObjectStore, dataset: Dataset, version: DatasetVersion, name: str) -> FileRef:
    """The manifest entry whose ``path`` is ``name`` (or whose file name is, for clients that
    send only that). Only files the manifest lists are ever served: no path reaches others."""
    by_path, by_name = listed_files(
        store, version.manifest_sha256, lambda: read_manifest(store, version)
    )
    entry = by_path.get(name) or by_name.get(name)
    if entry is None:
        raise NotFound(f"version {version.number} of dataset {dataset.name!r} has no file {name!r}")
    return FileRef(
        key=f"{dataset_prefix(dataset)}/{entry['path']}",
        name=PurePosixPath(entry["path"]).name,
        bytes=entry["bytes"],
        sha256=entry["sha256"],
    )


# Manifests are immutable and content-addressed: a parsed one stays true. Pulls fetch a file
# in many ranged requests, which would otherwise each read, hash and parse the manifest.
_LISTINGS: OrderedDict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = OrderedDict()
_LISTINGS_KEPT = 64
_LISTINGS_LOCK = threading.Lock()


def listed_files(
    store: ObjectStore, sha256: str, load: Callable[[], bytes]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The entries of an immutable listing (a manifest, an export index) named by its
    sha256, by path and by file name (the first of a name wins); ``load`` reads and checks
    it the first time only."""
    cache_key = (store.url, sha256)
    with _LISTINGS_LOCK:
        found = _LISTINGS.get(cache_key)
        if found is not None:
            _LISTINGS.move_to_end(cache_key)
            return found
    entries = json.loads(load())["files"]
    by_name: dict[str, Any] = {}
    for entry in entries:
        by_name.setdefault(PurePosixPath(entry["path"]).name, entry)
    listing = ({entry["path"]: entry for entry in entries}, by_name)
    with _LISTINGS_LOCK:
        _LISTINGS[cache_key] = listing
        while len(_LISTINGS) > _LISTINGS_KEPT:
            _LISTINGS.popitem(last=False)
    return listing


def forget_listings() -> None:
    """Drop the parsed manifests (a new process starts so)."""
    with _LISTINGS_LOCK:
        _LISTINGS.clear()


def check_stored(store: ObjectStore, ref: FileRef) -> None:
    try:
        size = store.stat(ref.key).size
    except ObjectNotFound as exc:
        raise ServiceUnavailable(f"shard {ref.name} is missing from object storage") from exc
    if size != ref.bytes:
        raise ServiceUnavailable(
            f"shard {ref.name} in storage has {size} bytes, the manifest says {ref.bytes}"
        )
