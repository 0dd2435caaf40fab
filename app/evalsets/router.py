"""HTTP for evaluation sets: the texts generated documents must not leak."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from app.core.auth import Reader, SessionDep, Submitter
from app.core.body import jsonl_body, raw_body, utf8
from app.core.problems import documented
from app.core.routing import GuardedRoute
from app.evalsets import service
from app.evalsets.items import EVAL_ITEM_SCHEMA, MAX_ITEMS
from app.evalsets.schemas import EvalSetPage, EvalSetRead
from app.models import EvalSet

router = APIRouter(prefix="/v1/eval-sets", tags=["eval-sets"], route_class=GuardedRoute)

SetName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


def _read(row: EvalSet, too_short: int | None = None) -> EvalSetRead:
    return EvalSetRead(
        name=row.name,
        items=row.items,
        sha256=row.sha256,
        created_at=row.created_at,
        too_short=too_short,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=EvalSetRead,
    openapi_extra=jsonl_body(EVAL_ITEM_SCHEMA, max_lines=MAX_ITEMS),
    responses=documented(409),
)
def register_eval_set(
    body: Annotated[bytes, Depends(raw_body)],
    principal: Submitter,
    session: SessionDep,
    name: Annotated[str, Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")],
) -> EvalSetRead:
    """Register a set from JSONL (``{"text": ..., "id": ...}`` per line): all lines or none.

    Every later job of the team rejects documents that leak its items (see the spec's
    ``decontam``). ``too_short`` counts items under 8 words: a job checks them only if its
    ``decontam.ngram`` is at most their length (shorter text is too generic to check).
    """
    row, too_short = service.register(session, principal, name, utf8(body))
    return _read(row, too_short)


@router.get("", response_model=EvalSetPage)
def list_eval_sets(principal: Reader, session: SessionDep) -> EvalSetPage:
    return EvalSetPage(items=[_read(row) for row in service.list_sets(session, principal)])


@router.get("/{name}", response_model=EvalSetRead)
def get_eval_set(name: SetName, principal: Reader, session: SessionDep) -> EvalSetRead:
    return _read(service.get(session, principal, name))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, responses=documented(409))
def delete_eval_set(name: SetName, principal: Submitter, session: SessionDep) -> Response:
    service.delete(session, principal, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
