"""Every query about tokenizers and exports."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.core.sql import insert_ignoring_conflicts
from app.models import Export, Tokenizer
from app.models.base import utcnow


def find_tokenizer(session: Session, team_id: uuid.UUID, name: str) -> Tokenizer | None:
    return session.scalars(
        select(Tokenizer).where(Tokenizer.team_id == team_id, Tokenizer.name == name)
    ).one_or_none()


def add_tokenizer(session: Session, row: Tokenizer) -> bool:
    """Insert unless the team has the name already; True if inserted."""
    result = session.execute(
        insert_ignoring_conflicts(session, Tokenizer.__table__)
        .values(
            id=row.id or uuid.uuid4(),
            team_id=row.team_id,
            name=row.name,
            sha256=row.sha256,
            bytes=row.bytes,
            vocab_size=row.vocab_size,
            object_key=row.object_key,
            created_at=row.created_at or utcnow(),
        )
        .execution_options(preserve_rowcount=True)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def list_tokenizers(session: Session, team_id: uuid.UUID) -> Sequence[Tokenizer]:
    return session.scalars(
        select(Tokenizer).where(Tokenizer.team_id == team_id).order_by(Tokenizer.name)
    ).all()


def add_export(session: Session, row: Export) -> bool:
    """Insert unless the same request exists for the version; True if inserted."""
    result = session.execute(
        insert_ignoring_conflicts(session, Export.__table__)
        .values(
            id=row.id,
            team_id=row.team_id,
            dataset_id=row.dataset_id,
            version=row.version,
            tokenizer_id=row.tokenizer_id,
            request=row.request,
            request_sha256=row.request_sha256,
            status="queued",
            documents_total=row.documents_total,
            documents_done=0,
            tokens=0,
            created_at=utcnow(),
        )
        .execution_options(preserve_rowcount=True)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def find_export_by_request(
    session: Session, dataset_id: uuid.UUID, version: int, request_sha256: str
) -> Export | None:
    return session.scalars(
        select(Export).where(
            Export.dataset_id == dataset_id,
            Export.version == version,
            Export.request_sha256 == request_sha256,
        )
    ).one_or_none()


def get_export(session: Session, export_id: uuid.UUID) -> Export | None:
    return session.get(Export, export_id, populate_existing=True)


def list_exports(session: Session, dataset_id: uuid.UUID, version: int) -> Sequence[Export]:
    return session.scalars(
        select(Export)
        .where(Export.dataset_id == dataset_id, Export.version == version)
        .order_by(Export.created_at, Export.id)
    ).all()


def claim_export(session: Session, export_id: uuid.UUID, now: datetime, stale: datetime) -> bool:
    """queued → running, or take over a running export whose worker went quiet."""
    result = session.execute(
        update(Export)
        .where(
            Export.id == export_id,
            or_(
                Export.status == "queued",
                (Export.status == "running") & (Export.heartbeat_at < stale),
            ),
        )
        .values(status="running", started_at=now, heartbeat_at=now, error=None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def requeue_failed_export(session: Session, export_id: uuid.UUID) -> bool:
    result = session.execute(
        update(Export)
        .where(Export.id == export_id, Export.status == "failed")
        .values(status="queued", error=None, documents_done=0, tokens=0, finished_at=None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def renew_export(
    session: Session,
    export_id: uuid.UUID,
    claimed: datetime,
    now: datetime,
    documents_done: int,
    tokens: int,
) -> bool:
    """Write progress, only while the claim is still this worker's."""
    result = session.execute(
        update(Export)
        .where(Export.id == export_id, Export.status == "running", Export.heartbeat_at == claimed)
        .values(heartbeat_at=now, documents_done=documents_done, tokens=tokens)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def finish_export(
    session: Session,
    export_id: uuid.UUID,
    claimed: datetime,
    *,
    status: str,
    error: str | None = None,
    index_key: str | None = None,
    index_sha256: str | None = None,
    documents_done: int | None = None,
    tokens: int | None = None,
) -> bool:
    values: dict[str, object] = {"status": status, "finished_at": utcnow(), "error": error}
    if index_key is not None:
        values |= {"index_key": index_key, "index_sha256": index_sha256}
    if documents_done is not None:
        values |= {"documents_done": documents_done, "tokens": tokens}
    result = session.execute(
        update(Export)
        .where(Export.id == export_id, Export.status == "running", Export.heartbeat_at == claimed)
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def stale_exports(
    session: Session, queued_before: datetime, quiet_since: datetime
) -> Sequence[uuid.UUID]:
    """Exports a worker should have taken by now: queued long ago, or running but quiet."""
    return session.scalars(
        select(Export.id).where(
            or_(
                (Export.status == "queued") & (Export.created_at < queued_before),
                (Export.status == "running") & (Export.heartbeat_at < quiet_since),
            )
        )
    ).all()
