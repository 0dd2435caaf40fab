"""Every query about datasets, shards and versions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session, defer

from app.core.sql import insert_ignoring_conflicts
from app.models import Dataset, DatasetVersion, Document, Shard


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


def last_accepted_at(session: Session, job_id: uuid.UUID) -> datetime | None:
    return session.scalar(
        select(func.max(Document.created_at)).where(
            Document.job_id == job_id, Document.status == "accepted"
        )
    )


def stream_accepted_documents(session: Session, job_id: uuid.UUID) -> Iterator[Document]:
    """Accepted documents in item order, fetched in batches rather than all at once."""
    query = (
        select(Document)
        .options(defer(Document.raw_text))
        .where(Document.job_id == job_id, Document.status == "accepted")
        .order_by(Document.item_index)
        .execution_options(yield_per=500)
    )
    yield from session.scalars(query)


def job_shards(session: Session, job_id: uuid.UUID) -> Sequence[Shard]:
    return session.scalars(
        select(Shard).where(Shard.job_id == job_id, Shard.committed.is_(True)).order_by(Shard.seq)
    ).all()


def add_shard(session: Session, values: dict[str, Any]) -> None:
    session.execute(insert(Shard).values(**values))


def assign_shard(
    session: Session, job_id: uuid.UUID, first_index: int, last_index: int, shard_id: uuid.UUID
) -> None:
    """Shards hold a job's accepted documents in item order: a range of indices each."""
    session.execute(
        update(Document)
        .where(Document.job_id == job_id, Document.status == "accepted")
        .where(Document.item_index.between(first_index, last_index))
        .values(shard_id=shard_id)
    )


def committed_shards(session: Session, dataset_id: uuid.UUID) -> Sequence[Shard]:
    return session.scalars(
        select(Shard)
        .where(Shard.dataset_id == dataset_id, Shard.committed.is_(True))
        .order_by(Shard.created_at, Shard.object_key)
    ).all()


def latest_version_number(session: Session, dataset_id: uuid.UUID) -> int:
    return (
        session.scalar(
            select(func.coalesce(func.max(DatasetVersion.number), 0)).where(
                DatasetVersion.dataset_id == dataset_id
            )
        )
        or 0
    )


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
