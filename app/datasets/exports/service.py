"""Exports: a dataset version tokenized into training formats, by a worker.

A team uploads its ``tokenizer.json`` once; an export of a version names it, the EOS token
to end each document with, and the formats. A worker reads the version's files (checking
each one's sha256), tokenizes on several processes, writes every format per stance
(``megatron/<stance>.bin|.idx``, ``mds/<stance>/``, ``npy/<stance>/``), uploads the files,
then the export index that lists them with their sha256 and token counts. The index, like a
manifest, is written last: an export that stopped midway has none and is run again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sqlalchemy.orm import Session

from app.core.db import Sessions, after_commit
from app.core.errors import Conflict, InvalidRequest, NotFound
from app.core.settings import Settings
from app.datasets import repository as datasets_repository
from app.datasets import service as datasets
from app.datasets.exports import repository
from app.datasets.exports.base import ExportedFile
from app.datasets.exports.dolma_tokens import TokenArrayWriter
from app.datasets.exports.mds import MDSWriter
from app.datasets.exports.megatron import IndexedDatasetWriter
from app.datasets.exports.tokenize import ParallelTokenizer, TokenizerFile, load_tokenizer
from app.datasets.manifest import FORMAT, dolma_timestamp, sha256_hex
from app.datasets.shards import read_shard
from app.models import Dataset, DatasetVersion, Export, Tokenizer
from app.models.base import utcnow
from app.storage import ObjectStore, put_content_addressed
from app.teams.service import Principal

log = logging.getLogger(__name__)

FORMATS = ("megatron", "mds", "npy")
INDEX_FORMAT = "priorforge-export/1"
RUN_EXPORT_TASK = "exports.run"
# How often a running export writes its progress (and proves it is alive).
PROGRESS_SECONDS = 2.0


def tokenizer_prefix(team_id: uuid.UUID) -> str:
    return f"teams/{team_id}/tokenizers"


def register_tokenizer(
    session: Session, principal: Principal, name: str, data: bytes, *, store: ObjectStore
) -> tuple[Tokenizer, bool]:
    """Keep a tokenizer.json under ``name``; (row, created). The same file again is a no-op,
    another file under a taken name a Conflict."""
    try:
        # Any id resolves as the EOS here: an export names its own.
        parsed = load_tokenizer(data, 0)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    found = repository.find_tokenizer(session, principal.team_id, name)
    if found is not None:
        if found.sha256 != parsed.sha256:
            raise Conflict(
                f"the tokenizer name {name!r} is taken by another file (sha256 "
                f"{found.sha256[:12]}…): choose another name; an export names the tokenizer "
                "it used, so a name never changes its file"
            )
        return found, False
    key = f"{tokenizer_prefix(principal.team_id)}/{parsed.sha256}.json"
    put_content_addressed(store, key, data)
    row = Tokenizer(
        team_id=principal.team_id,
        name=name,
        sha256=parsed.sha256,
        bytes=len(data),
        vocab_size=parsed.vocab_size,
        object_key=key,
    )
    if not repository.add_tokenizer(session, row):
        # A racing upload took the name: as if it had come first.
        return register_tokenizer(session, principal, name, data, store=store)
    stored = repository.find_tokenizer(session, principal.team_id, name)
    assert stored is not None
    return stored, True


def list_tokenizers(session: Session, principal: Principal) -> list[Tokenizer]:
    return list(repository.list_tokenizers(session, principal.team_id))


def require_tokenizer(session: Session, principal: Principal, name: str) -> Tokenizer:
    found = repository.find_tokenizer(session, principal.team_id, name)
    if found is None:
        raise Conflict(
            f"the team has no tokenizer named {name!r}: upload its tokenizer.json first "
            f"(POST /v1/tokenizers?name={name})"
        )
    return found


@dataclass(frozen=True)
class ExportRequest:
    tokenizer: str
    formats: tuple[str, ...]
    eos: str
    mds_text: bool = False


class Dispatch(Protocol):
    def __call__(self, export_id: uuid.UUID) -> None: ...


def celery_dispatch(export_id: uuid.UUID) -> None:
    from workers.celery_app import celery_app

    celery_app.send_task(RUN_EXPORT_TASK, args=[str(export_id)])


def request_export(
    session: Session,
    principal: Principal,
    name: str,
    number: int,
    request: ExportRequest,
    *,
    store: ObjectStore,
    dispatch: Dispatch | None,
) -> tuple[Export, bool]:
    """The export of version ``number`` that ``request`` describes; (row, created). A new one
    is sent to a worker once the transaction commits (``dispatch`` None: the caller runs it)."""
    dataset, version = datasets.get_version(session, principal, name, number)
    tokenizer = require_tokenizer(session, principal, request.tokenizer)
    try:
        load_tokenizer(store.get_bytes(tokenizer.object_key), request.eos)
    except ValueError as exc:
        # The request is well formed; the team's stored tokenizer does not have the token.
        raise Conflict(f"eos: {exc}") from None
    asked = {
        "tokenizer": tokenizer.name,
        "tokenizer_sha256": tokenizer.sha256,
        "formats": sorted(set(request.formats)),
        "eos": request.eos,
        "mds_text": request.mds_text,
    }
    digest = sha256_hex(json.dumps(asked, sort_keys=True).encode())
    export = Export(
        id=uuid.uuid4(),
        team_id=principal.team_id,
        dataset_id=dataset.id,
        version=version.number,
        tokenizer_id=tokenizer.id,
        request=asked,
        request_sha256=digest,
        documents_total=version.records,
    )
    created = repository.add_export(session, export)
    found = repository.find_export_by_request(session, dataset.id, version.number, digest)
    assert found is not None
    # Asking again for an export that failed runs it again (its cause may be fixed now).
    retried = not created and repository.requeue_failed_export(session, found.id)
    if retried:
        found = repository.get_export(session, found.id) or found
    if (created or retried) and dispatch is not None:
        after_commit(session, lambda: dispatch(found.id))
    return found, created or retried


def get_export(
    session: Session,
    principal: Principal,
    name: str,
    number: int,
    export_id: uuid.UUID,
    owner: str | None = None,
) -> tuple[Dataset, Export]:
    dataset, _version = datasets.get_version(session, principal, name, number, owner)
    export = repository.get_export(session, export_id)
    if export is None or export.dataset_id != dataset.id or export.version != number:
        raise NotFound(f"version {number} of dataset {name!r} has no export {export_id}")
    return dataset, export


def find_export(session: Session, export_id: uuid.UUID) -> Export:
    """An export by id, whoever's (for the process that runs it)."""
    export = repository.get_export(session, export_id)
    if export is None:
        raise NotFound(f"no export {export_id}")
    return export


def list_exports(
    session: Session, principal: Principal, name: str, number: int, owner: str | None = None
) -> list[Export]:
    dataset, _version = datasets.get_version(session, principal, name, number, owner)
    return list(repository.list_exports(session, dataset.id, number))


def export_prefix(dataset: Dataset, export_id: uuid.UUID) -> str:
    return f"{datasets.dataset_prefix(dataset)}/exports/{export_id}"


def read_index(store: ObjectStore, export: Export) -> bytes:
    if export.index_key is None or export.index_sha256 is None:
        raise Conflict(f"export {export.id} is {export.status}: it has no index yet")
    body = store.get_bytes(export.index_key)
    if sha256_hex(body) != export.index_sha256:
        raise Conflict("stored export index does not match its recorded sha256; storage is corrupt")
    return body


def find_export_file(
    store: ObjectStore, dataset: Dataset, export: Export, path: str
) -> datasets.FileRef:
    """An index entry by its path: only files the index lists are ever served."""
    if export.index_sha256 is None:
        read_index(store, export)  # raises: an export that has not finished has no files
    by_path, _by_name = datasets.listed_files(
        store, str(export.index_sha256), lambda: read_index(store, export)
    )
    entry = by_path.get(path)
    if entry is None:
        raise NotFound(f"export {export.id} has no file {path!r}")
    return datasets.FileRef(
        key=f"{export_prefix(dataset, export.id)}/{entry['path']}",
        name=entry["path"].rsplit("/", 1)[-1],
        bytes=entry["bytes"],
        sha256=entry["sha256"],
    )


def stale_exports(session: Session, settings: Settings) -> list[uuid.UUID]:
    """Exports no worker is on: queued for longer than the stall time, or running without
    a heartbeat for longer than a lease (the reconciler sends them again)."""
    now = utcnow()
    return list(
        repository.stale_exports(
            session,
            now - timedelta(seconds=settings.stall_seconds),
            now - timedelta(seconds=settings.lease_seconds),
        )
    )


# Running an export (a worker, or the CLI in-process)


class ExportLost(Exception):
    """Another worker took the export over (this one stopped renewing it in time)."""


def run_export(
    export_id: uuid.UUID,
    *,
    store: ObjectStore,
    settings: Settings,
    sessions: Sessions,
    processes: int | None = None,
) -> str:
    """Claim the export and write it; its final status (another's, if it was not ours)."""
    now = utcnow()
    with sessions() as session:
        if not repository.claim_export(
            session, export_id, now, now - timedelta(seconds=settings.lease_seconds)
        ):
            export = repository.get_export(session, export_id)
            return export.status if export else "missing"
        export = repository.get_export(session, export_id)
        assert export is not None
        dataset = session.get(Dataset, export.dataset_id)
        version = datasets_repository.get_version(session, export.dataset_id, export.version)
        tokenizer = session.get(Tokenizer, export.tokenizer_id)
        assert dataset is not None
        assert version is not None
        assert tokenizer is not None
        session.expunge_all()
    claim = [now]

    def progress(done: int, tokens: int) -> None:
        renewed = utcnow()
        with sessions() as session:
            if not repository.renew_export(session, export_id, claim[0], renewed, done, tokens):
                raise ExportLost(f"export {export_id} was taken over by another worker")
        claim[0] = renewed

    try:
        index = _write(store, settings, dataset, version, tokenizer, export, progress, processes)
    except ExportLost:
        log.warning("export %s was taken over by another worker", export_id)
        return "running"
    except Exception as exc:
        log.exception("export %s failed", export_id)
        with sessions() as session:
            repository.finish_export(
                session, export_id, claim[0], status="failed", error=f"{exc}"[:2000]
            )
        return "failed"
    key = f"{export_prefix(dataset, export_id)}/index.json"
    put_content_addressed(store, key, index)
    totals = json.loads(index)["totals"]
    with sessions() as session:
        finished = repository.finish_export(
            session,
            export_id,
            claim[0],
            status="succeeded",
            index_key=key,
            index_sha256=sha256_hex(index),
            documents_done=totals["documents"],
            tokens=totals["tokens"],
        )
    return "succeeded" if finished else "running"


def _write(
    store: ObjectStore,
    settings: Settings,
    dataset: Dataset,
    version: DatasetVersion,
    tokenizer_row: Tokenizer,
    export: Export,
    progress: Callable[[int, int], None],
    processes: int | None,
) -> bytes:
    """Tokenize the version's files into every requested format; the index, as bytes."""
    manifest = json.loads(datasets.read_manifest(store, version))
    if manifest.get("format") != FORMAT:
        raise Conflict(
            f"version {version.number} predates compacted versions: snapshot the dataset "
            "again and export the new version"
        )
    asked = export.request
    tokenizer = load_tokenizer(store.get_bytes(tokenizer_row.object_key), asked["eos"])
    prefix = export_prefix(dataset, export.id)
    listed: list[dict[str, Any]] = []
    stances: dict[str, dict[str, Any]] = {}
    done = [0, 0]
    last = [time.monotonic()]

    def advance(tokens: int) -> None:
        done[0] += 1
        done[1] += tokens
        if time.monotonic() - last[0] >= PROGRESS_SECONDS:
            progress(done[0], done[1])
            last[0] = time.monotonic()

    with (
        tempfile.TemporaryDirectory(prefix="priorforge-export-") as tmp,
        ParallelTokenizer(tokenizer, processes=processes or settings.export_processes) as encoder,
    ):
        root = Path(tmp)
        for stance in sorted(manifest["stances"]):
            files = [f for f in manifest["files"] if f["stance"] == stance]
            written, stance_tokens = _export_stance(
                store, dataset, files, encoder, tokenizer, asked, root, stance, advance
            )
            for relative, file, fmt in written:
                put_content_addressed(store, f"{prefix}/{relative}", root / relative)
                listed.append(
                    {
                        "path": relative,
                        "format": fmt,
                        "stance": stance,
                        "bytes": file.bytes,
                        "sha256": file.sha256,
                        "documents": file.documents,
                        "tokens": file.tokens,
                    }
                )
            stances[stance] = {
                "documents": sum(f["records"] for f in files),
                "tokens": stance_tokens,
                "megatron_prefix": f"megatron/{stance}" if "megatron" in asked["formats"] else None,
                "mds_directory": f"mds/{stance}" if "mds" in asked["formats"] else None,
                "npy_files": [
                    e["path"]
                    for e in listed
                    if e["stance"] == stance
                    and e["path"].startswith("npy/")
                    and e["path"].endswith(".npy")
                ],
            }
    progress(done[0], done[1])
    body = {
        "format": INDEX_FORMAT,
        "export": str(export.id),
        "dataset": dataset.name,
        "version": version.number,
        "manifest_sha256": version.manifest_sha256,
        "created": dolma_timestamp(utcnow()),
        "tokenizer": {
            "name": tokenizer_row.name,
            "sha256": tokenizer.sha256,
            "vocab_size": tokenizer.vocab_size,
            "eos_token": tokenizer.eos_token,
            "eos_id": tokenizer.eos_id,
        },
        "formats": asked["formats"],
        "mds_text": asked["mds_text"],
        "totals": {
            "documents": sum(s["documents"] for s in stances.values()),
            "tokens": sum(s["tokens"] for s in stances.values()),
        },
        "stances": stances,
        "files": listed,
    }
    return json.dumps(body, indent=2, ensure_ascii=False).encode() + b"\n"


def _export_stance(
    store: ObjectStore,
    dataset: Dataset,
    files: list[dict[str, Any]],
    encoder: ParallelTokenizer,
    tokenizer: TokenizerFile,
    asked: dict[str, Any],
    root: Path,
    stance: str,
    advance: Callable[[int], None],
) -> tuple[list[tuple[str, ExportedFile, str]], int]:
    """Write one stance in every format: its files (path relative to the export, file,
    format), and its tokens (EOS included)."""
    formats = asked["formats"]
    with ExitStack() as cleanup:
        writers: dict[str, Any] = {}
        if "megatron" in formats:
            writers["megatron"] = IndexedDatasetWriter(
                root / "megatron" / stance, tokenizer.vocab_size
            )
        if "mds" in formats:
            writers["mds"] = MDSWriter(
                root / "mds" / stance, tokenizer.vocab_size, with_text=asked["mds_text"]
            )
        if "npy" in formats:
            writers["npy"] = TokenArrayWriter(root / "npy" / stance, tokenizer.vocab_size)
        for writer in writers.values():
            cleanup.callback(writer.abort)
        pending: deque[dict[str, Any]] = deque()
        tokens_written = 0

        def texts() -> Iterator[str]:
            for record in _records(store, dataset, files):
                pending.append(record)
                yield record["text"]

        for tokens in encoder.encode(texts()):
            record = pending.popleft()
            kept = np.array(tokens, copy=True)  # the encoder reuses its batch's buffer
            if "megatron" in writers:
                writers["megatron"].add_document(kept)
            if "mds" in writers:
                writers["mds"].add_document(kept, record["text"] if asked["mds_text"] else None)
            if "npy" in writers:
                writers["npy"].add_document(kept, record["id"], record["source"])
            advance(int(kept.size))
            tokens_written += int(kept.size)
        written: list[tuple[str, ExportedFile, str]] = []
        for fmt, writer in writers.items():
            base = root / "megatron" if fmt == "megatron" else root / fmt / stance
            for file in writer.close():
                written.append(((base / file.path).relative_to(root).as_posix(), file, fmt))
        cleanup.pop_all()
    return written, tokens_written


def _records(
    store: ObjectStore, dataset: Dataset, files: list[dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """The stance's records in position order, each file checked against its sha256."""
    for entry in files:
        data = store.get_bytes(f"{datasets.dataset_prefix(dataset)}/{entry['path']}")
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise Conflict(
                f"{entry['path']} in the object store does not match its sha256 in the "
                "manifest: storage is damaged, nothing was exported"
            )
        yield from read_shard(data)
