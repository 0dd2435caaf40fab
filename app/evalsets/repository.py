"""Every query about evaluation sets."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from app.evalsets.items import EvalText
from app.models import EvalItem, EvalSet

INSERT_BATCH = 5_000


def by_name(
    session: Session, team_id: uuid.UUID, name: str, *, for_update: bool = False
) -> EvalSet | None:
    query = select(EvalSet).where(EvalSet.team_id == team_id, EvalSet.name == name)
    return session.scalar(query.with_for_update() if for_update else query)


def team_sets(
    session: Session, team_id: uuid.UUID, *, for_share: bool = False
) -> Sequence[EvalSet]:
    """The team's sets by name; ``for_share`` holds them against deletion until commit."""
    query = select(EvalSet).where(EvalSet.team_id == team_id).order_by(EvalSet.name)
    return session.scalars(query.with_for_update(read=True) if for_share else query).all()


def add_set(
    session: Session, team_id: uuid.UUID, name: str, items: Sequence[EvalText], sha256: str
) -> EvalSet:
    row = EvalSet(team_id=team_id, name=name, items=len(items), sha256=sha256)
    session.add(row)
    session.flush()
    for start in range(0, len(items), INSERT_BATCH):
        session.execute(
            insert(EvalItem),
            [
                {"eval_set_id": row.id, "position": start + k, "item_id": i.item_id, "text": i.text}
                for k, i in enumerate(items[start : start + INSERT_BATCH])
            ],
        )
    return row


def delete_set(session: Session, eval_set_id: uuid.UUID) -> None:
    session.execute(delete(EvalItem).where(EvalItem.eval_set_id == eval_set_id))
    session.execute(delete(EvalSet).where(EvalSet.id == eval_set_id))


def texts(session: Session, eval_set_id: uuid.UUID) -> Iterator[tuple[str, str]]:
    """(item id, text) in upload order, streamed."""
    rows = session.execute(
        select(EvalItem.item_id, EvalItem.text)
        .where(EvalItem.eval_set_id == eval_set_id)
        .order_by(EvalItem.position)
        .execution_options(yield_per=INSERT_BATCH)
    )
    for row in rows:
        yield row.item_id, row.text
