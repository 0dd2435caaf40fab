"""Every query about datasets, shards and versions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

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


def accepted_documents(session: Session, job_id: uuid.UUID) -> Sequence[Document]:
    return session.scalars(
        select(Document)
        .where(Document.job_id == job_id, Document.status == "accepted")
        .order_by(Document.item_index)
    ).all()


def job_shards(session: Session, job_id: uuid.UUID) -> Sequence[Shard]:
    return session.scalars(
        select(Shard).where(Shard.job_id == job_id, Shard.committed.is_(True)).order_by(Shard.seq)
    ).all()


def add_shard(session: Session, values: dict[str, Any]) -> None:
    session.execute(insert_ignoring_conflicts(session, Shard).values(**values))


def shard_id_for_key(session: Session, object_key: str) -> uuid.UUID | None:
    return session.scalar(select(Shard.id).where(Shard.object_key == object_key))


def assign_shard(session: Session, document_ids: Sequence[uuid.UUID], shard_id: uuid.UUID) -> None:
    session.execute(update(Document).where(Document.id.in_(document_ids)).values(shard_id=shard_id))


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
