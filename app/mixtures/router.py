"""HTTP for mixtures: a token budget over exports and a corpus, as framework configs."""

from __future__ import annotations

from fastapi import APIRouter

from app.core.auth import Reader, SessionDep
from app.core.problems import documented
from app.core.routing import GuardedRoute
from app.mixtures import service
from app.mixtures.schemas import MixtureCreate, MixtureRead
from app.storage.default import get_store

router = APIRouter(prefix="/v1/mixtures", tags=["mixtures"], route_class=GuardedRoute)


@router.post("", response_model=MixtureRead, responses=documented(404, 409))
def plan_mixture(body: MixtureCreate, principal: Reader, session: SessionDep) -> MixtureRead:
    """Plan a mixture (repeats from the exports' token counts, warnings) and its configs."""
    return service.plan(session, principal, body, store=get_store())
