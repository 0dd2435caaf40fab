"""Every query about datasets, shards and versions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Uuid, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from app.core.sql import among, insert_ignoring_conflicts
from app.models import Dataset, DatasetShare, DatasetVersion, Document, Job, Shard, Team
from app.models.base import utcnow


def find_dataset(session: Session, team_id: uuid.UUID, name: str) -> Dataset | None:
    return session.scalars(
        select(Dataset).where(Dataset.team_id == team_id, Dataset.name == name)
    ).one_or_none()


def insert_dataset(session: Session, team_id: uuid.UUID, name: str) -> None:
    session.execute(
        insert_ignoring_conflicts(session, Dataset).values(
            id=uuid.uuid4(), team_id=team_id, name=name
        )
    )


def list_datasets(session: Session, team_id: uuid.UUID) -> Sequence[Dataset]:
    return session.scalars(
        select(Dataset).where(Dataset.team_id == team_id).order_by(Dataset.name)
    ).all()


def readable_datasets(session: Session, team_id: uuid.UUID) -> Sequence[tuple[Dataset, str]]:
    """The team's datasets and those shared with it, each with its owner's name."""
    shared = select(DatasetShare.dataset_id).where(DatasetShare.team_id == team_id)
    rows = session.execute(
        select(Dataset, Team.name)
        .join(Team, Team.id == Dataset.team_id)
        .where((Dataset.team_id == team_id) | Dataset.id.in_(shared))
        .order_by(Team.name, Dataset.name)
    ).all()
    return [(dataset, owner) for dataset, owner in rows]


def is_shared(session: Session, dataset_id: uuid.UUID, team_id: uuid.UUID) -> bool:
    return session.get(DatasetShare, {"dataset_id": dataset_id, "team_id": team_id}) is not None


def add_share(session: Session, dataset_id: uuid.UUID, team_id: uuid.UUID) -> bool:
    result = session.execute(
        insert_ignoring_conflicts(session, DatasetShare.__table__)
        .values(dataset_id=dataset_id, team_id=team_id, created_at=utcnow())
        .execution_options(preserve_rowcount=True)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def remove_share(session: Session, dataset_id: uuid.UUID, team_id: uuid.UUID) -> bool:
    result = session.execute(
        delete(DatasetShare).where(
            DatasetShare.dataset_id == dataset_id, DatasetShare.team_id == team_id
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def list_shares(session: Session, dataset_id: uuid.UUID) -> Sequence[tuple[str, datetime]]:
    rows = session.execute(
        select(Team.name, DatasetShare.created_at)
        .join(Team, Team.id == DatasetShare.team_id)
        .where(DatasetShare.dataset_id == dataset_id)
        .order_by(Team.name)
    ).all()
    return [(name, created) for name, created in rows]


def last_unpublished_at(session: Session, job_id: uuid.UUID) -> datetime | None:
    return session.scalar(
        select(func.max(Document.created_at)).where(
            Document.job_id == job_id, Document.status == "accepted", Document.shard_id.is_(None)
        )
    )


# What a shard or version record needs of a document: rows of these, not ORM objects, which
# cost publishing more than compressing the text does.
_RECORD = (
    Document.id,
    Document.job_id,
    Document.item_index,
    Document.text,
    Document.created_at,
    Document.meta,
    Document.stance,
    Document.scenario_id,
    Document.surface_form,
    Document.model,
    Document.prompt_sha256,
    Document.template_version,
    Document.content_sha256,
    Document.position,
)


def stream_unpublished_documents(session: Session, job_id: uuid.UUID) -> Iterator[Row[Any]]:
    """Accepted documents in no shard yet (``_RECORD`` rows), in item order, in batches."""
    query = (
        select(*_RECORD)
        .where(
            Document.job_id == job_id, Document.status == "accepted", Document.shard_id.is_(None)
        )
        .order_by(Document.item_index)
        .execution_options(yield_per=500)
    )
    yield from session.execute(query)


def job_shards(session: Session, job_id: uuid.UUID) -> Sequence[Shard]:
    return session.scalars(
        select(Shard).where(Shard.job_id == job_id, Shard.committed.is_(True)).order_by(Shard.seq)
    ).all()


def next_shard_seq(session: Session, job_id: uuid.UUID) -> int:
    return (
        session.scalar(
            select(func.coalesce(func.max(Shard.seq) + 1, 0)).where(Shard.job_id == job_id)
        )
        or 0
    )


def add_shard(session: Session, values: dict[str, Any]) -> None:
    session.execute(insert(Shard).values(**values))


def assign_shard(
    session: Session, shard_id: uuid.UUID, document_ids: Sequence[uuid.UUID], batch: int = 5000
) -> None:
    """Name the documents a shard holds, by id: a document written meanwhile stays unsharded.

    The session's loaded documents are not updated (the caller's commit expires them)."""
    for start in range(0, len(document_ids), batch):
        session.execute(
            update(Document)
            .where(among(session, Document.id, document_ids[start : start + batch], Uuid()))
            .values(shard_id=shard_id)
            .execution_options(synchronize_session=False)
        )


def cancelled_jobs_with_unpublished_documents(
    session: Session, dataset_id: uuid.UUID
) -> Sequence[uuid.UUID]:
    return session.scalars(
        select(Document.job_id)
        .join(Job, Job.id == Document.job_id)
        .where(Document.dataset_id == dataset_id, Document.status == "accepted")
        .where(Document.shard_id.is_(None), Job.status == "cancelled")
        .group_by(Document.job_id)
        .order_by(Document.job_id)
    ).all()


def lock_cancelled_job(session: Session, job_id: uuid.UUID) -> bool:
    """Hold the cancelled job's row until commit, so one publisher at a time shards its
    documents. A guarded no-op UPDATE locks the row on Postgres and the database on SQLite."""
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.status == "cancelled").values(status=Job.status)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def lock_dataset(session: Session, dataset_id: uuid.UUID) -> None:
    """Hold the dataset's row until commit: one snapshot of a dataset at a time (Postgres;
    SQLite has one writer anyway, and the version number's uniqueness is the last guard)."""
    session.execute(select(Dataset.id).where(Dataset.id == dataset_id).with_for_update())


def _published(dataset_id: uuid.UUID) -> Any:
    """Accepted documents a finished job published (they are in one of its shards)."""
    return (
        Document.dataset_id == dataset_id,
        Document.status == "accepted",
        Document.shard_id.is_not(None),
    )


def stances_to_place(session: Session, dataset_id: uuid.UUID) -> Sequence[str]:
    """The stances of published documents that no version holds yet."""
    return session.scalars(
        select(Document.stance)
        .where(*_published(dataset_id), Document.position.is_(None))
        .group_by(Document.stance)
        .order_by(Document.stance)
    ).all()


def placed_counts(session: Session, dataset_id: uuid.UUID) -> dict[str, int]:
    """Per stance, one past the highest position given so far."""
    rows = session.execute(
        select(Document.stance, func.max(Document.position))
        .where(Document.dataset_id == dataset_id, Document.position.is_not(None))
        .group_by(Document.stance)
    ).all()
    return {stance: int(top) + 1 for stance, top in rows if top is not None}


def stream_placed(
    session: Session, dataset_id: uuid.UUID, stance: str, first: int
) -> Iterator[Row[Any]]:
    """The stance's documents (``_RECORD`` rows) from position ``first`` on, in order."""
    yield from session.execute(
        select(*_RECORD)
        .where(
            Document.dataset_id == dataset_id,
            Document.stance == stance,
            Document.position >= first,
        )
        .order_by(Document.position)
        .execution_options(yield_per=500)
    )


def stream_unplaced(session: Session, dataset_id: uuid.UUID, stance: str) -> Iterator[Row[Any]]:
    """Published documents no version holds yet (``_RECORD`` rows), in the order they get
    positions: by job (oldest first), then item."""
    yield from session.execute(
        select(*_RECORD)
        .join(Job, Job.id == Document.job_id)
        .where(*_published(dataset_id), Document.stance == stance, Document.position.is_(None))
        .order_by(Job.created_at, Document.job_id, Document.item_index)
        .execution_options(yield_per=500)
    )


def place(session: Session, placements: Sequence[tuple[uuid.UUID, int]], batch: int = 1000) -> None:
    """Give each document its position (once: a placed document is never moved)."""
    statement = (
        update(Document.__table__)  # type: ignore[arg-type]
        .where(Document.__table__.c.id == bindparam("document_id"))
        .where(Document.__table__.c.position.is_(None))
        .values(position=bindparam("new_position"))
    )
    for start in range(0, len(placements), batch):
        session.execute(
            statement,
            [
                {"document_id": document_id, "new_position": position}
                for document_id, position in placements[start : start + batch]
            ],
        )


def lineage_values(session: Session, dataset_id: uuid.UUID, column: Any) -> list[str]:
    """The distinct values of a document column over the dataset's placed documents."""
    return [
        str(value)
        for value in session.scalars(
            select(column)
            .where(Document.dataset_id == dataset_id, Document.position.is_not(None))
            .group_by(column)
            .order_by(column)
        )
    ]


def placed_jobs(session: Session, dataset_id: uuid.UUID) -> Sequence[Job]:
    return session.scalars(
        select(Job)
        .where(
            Job.id.in_(
                select(Document.job_id).where(
                    Document.dataset_id == dataset_id, Document.position.is_not(None)
                )
            )
        )
        .order_by(Job.created_at, Job.id)
    ).all()


def committed_shards(session: Session, dataset_id: uuid.UUID) -> Sequence[Shard]:
    return session.scalars(
        select(Shard)
        .where(Shard.dataset_id == dataset_id, Shard.committed.is_(True))
        .order_by(Shard.created_at, Shard.object_key)
    ).all()


def latest_version(session: Session, dataset_id: uuid.UUID) -> DatasetVersion | None:
    return session.scalars(
        select(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset_id)
        .order_by(DatasetVersion.number.desc())
        .limit(1)
    ).one_or_none()


def add_version(session: Session, version: DatasetVersion) -> None:
    session.add(version)
    session.flush()


def get_version(session: Session, dataset_id: uuid.UUID, number: int) -> DatasetVersion | None:
    return session.scalars(
        select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset_id, DatasetVersion.number == number
        )
    ).one_or_none()


def list_versions(session: Session, dataset_id: uuid.UUID) -> Sequence[DatasetVersion]:
    return session.scalars(
        select(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset_id)
        .order_by(DatasetVersion.number)
    ).all()
