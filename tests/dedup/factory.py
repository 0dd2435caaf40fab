"""Rows for near-duplicate index tests: a team, a dataset, a job and its documents."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from app.dedup.lsh import to_bytes
from app.dedup.minhash import signatures
from app.dedup.service import NearDuplicateIndex
from app.models import Dataset, Document, Job, Team, WorkItem
from tests.llm_server import compose


def text(name: str, words: int = 400) -> str:
    return compose(name, len(name), words)


def near_copy(original: str, share: float = 0.01, seed: int = 0) -> str:
    words = original.split()
    rng = random.Random(seed)
    for position in rng.sample(range(len(words)), max(1, int(len(words) * share))):
        words[position] = f"changed{position}"
    return " ".join(words)


@dataclass
class Seeded:
    team_id: uuid.UUID
    dataset_id: uuid.UUID
    job_id: uuid.UUID
    items: int
    written: int = 0


def dataset(session: Session, items: int = 64) -> Seeded:
    """A fresh team and dataset, with one job of ``items`` work items to write documents for."""
    made = Seeded(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), items)
    session.execute(insert(Team).values(id=made.team_id, name=f"team-{made.team_id.hex[:10]}"))
    session.execute(
        insert(Dataset).values(id=made.dataset_id, team_id=made.team_id, name="near-dups")
    )
    session.execute(
        insert(Job).values(
            id=made.job_id,
            team_id=made.team_id,
            dataset_id=made.dataset_id,
            spec={},
            requested=items,
            max_items=items,
        )
    )
    session.execute(
        insert(WorkItem),
        [{"job_id": made.job_id, "item_index": i, "plan": {}} for i in range(items)],
    )
    return made


def document(
    session: Session,
    made: Seeded,
    body: str,
    status: str = "accepted",
    minhash: bytes | None = None,
    meta: dict[str, Any] | None = None,
) -> uuid.UUID:
    """Write a document row directly (as another process would), signed unless told."""
    document_id = uuid.uuid4()
    session.execute(
        insert(Document).values(
            id=document_id,
            job_id=made.job_id,
            item_index=made.written,
            team_id=made.team_id,
            dataset_id=made.dataset_id,
            status=status,
            stance="aligned",
            scenario_id="s",
            surface_form="essay",
            model="test",
            prompt_sha256="",
            template_version="",
            text=body,
            meta=meta or {},
            minhash=to_bytes(signatures([body]).rows[0]) if minhash is None else minhash,
        )
    )
    made.written += 1
    return document_id


def write_batch(
    session: Session, made: Seeded, bodies: Sequence[str], threshold: float = 0.7
) -> list[tuple[uuid.UUID, tuple[uuid.UUID, float] | None]]:
    """One write batch the way the pipeline writes it: index, documents, match/add, flush."""
    rows = signatures(bodies).rows
    near = NearDuplicateIndex(session, made.dataset_id, threshold, list(rows))
    outcomes: list[tuple[uuid.UUID, tuple[uuid.UUID, float] | None]] = []
    for body, row in zip(bodies, rows, strict=True):
        document_id = document(session, made, body, minhash=to_bytes(row))
        match = near.match(row)
        if match is None:
            near.add(document_id, row)
        else:
            session.execute(
                update(Document)
                .where(Document.id == document_id)
                .values(status="duplicate", reason="near", duplicate_of=match[0])
            )
        outcomes.append((document_id, match))
    near.flush()
    return outcomes
