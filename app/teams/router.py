"""HTTP for a team's API keys (admins only, confined to the caller's team)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from app.core.auth import Admin, Operator, SessionDep
from app.core.problems import documented
from app.core.routing import GuardedRoute
from app.core.settings import get_settings
from app.models.base import utcnow
from app.teams import operators, service
from app.teams.keys import PREFIX_PATTERN
from app.teams.schemas import (
    KeyCreate,
    KeyCreated,
    KeyPage,
    KeyRead,
    KeyRotate,
    KeyRotated,
    TeamCreate,
    TeamCreated,
    TeamPage,
    TeamQuotas,
    TeamRead,
)
from app.teams.service import IssuedKey, KeyView, Principal

router = APIRouter(prefix="/v1/keys", tags=["keys"], route_class=GuardedRoute)

KeyPrefix = Annotated[
    str, Path(pattern=PREFIX_PATTERN, description="The 12 hex characters after 'pf_'.")
]


def _read(view: KeyView, principal: Principal, note: str | None = None) -> KeyRead:
    current = view.key.id == principal.key_id
    return KeyRead.of(view, current=current, note=note if current else None)


def _created(issued: IssuedKey, principal: Principal, response: Response) -> KeyCreated:
    response.headers["Location"] = f"{router.prefix}/{issued.view.key.prefix}"
    return KeyCreated(key=_read(issued.view, principal), token=issued.token)


@router.get("", response_model=KeyPage)
def list_keys(principal: Admin, session: SessionDep, include_inactive: bool = False) -> KeyPage:
    """List the team's keys, newest first (revoked and expired ones with include_inactive)."""
    views = service.list_keys(session, team_id=principal.team_id, include_inactive=include_inactive)
    return KeyPage(items=[_read(view, principal) for view in views])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=KeyCreated)
def create_key(
    body: KeyCreate, principal: Admin, session: SessionDep, response: Response
) -> KeyCreated:
    """Create a key for the team; its token is in this response only."""
    expires_at = body.expires_at
    if body.expires_in_days is not None:
        expires_at = utcnow() + timedelta(days=body.expires_in_days)
    issued = service.issue_key(session, principal, body.role, name=body.name, expires_at=expires_at)
    return _created(issued, principal, response)


@router.get("/{prefix}", response_model=KeyRead)
def get_key(prefix: KeyPrefix, principal: Admin, session: SessionDep) -> KeyRead:
    """Show one of the team's keys."""
    return _read(service.get_key(session, prefix, team_id=principal.team_id), principal)


@router.post("/{prefix}/revoke", response_model=KeyRead)
def revoke_key(prefix: KeyPrefix, principal: Admin, session: SessionDep) -> KeyRead:
    """Revoke a key at once; revoking it again changes nothing."""
    view = service.revoke_key(session, prefix, team_id=principal.team_id, role=principal.role)
    return _read(view, principal, "this request's own key: it no longer works")


@router.post(
    "/{prefix}/rotate",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyRotated,
    responses=documented(409),
)
def rotate_key(
    prefix: KeyPrefix,
    principal: Admin,
    session: SessionDep,
    response: Response,
    body: KeyRotate | None = None,
) -> KeyRotated:
    """Replace a key with a new one (same role and name); the old one stops after the grace."""
    grace = timedelta(seconds=body.grace_seconds if body is not None else 0)
    issued, old = service.rotate_key(
        session, prefix, team_id=principal.team_id, grace=grace, role=principal.role
    )
    created = _created(issued, principal, response)
    note = (
        f"this request's own key: it works until {service.when(old.key.expires_at)}"
        if grace
        else "this request's own key: it no longer works"
    )
    return KeyRotated(key=created.key, token=created.token, replaced=_read(old, principal, note))


teams_router = APIRouter(prefix="/v1/teams", tags=["teams"], route_class=GuardedRoute)


@teams_router.get("", response_model=TeamPage)
def list_teams(principal: Operator, session: SessionDep) -> TeamPage:
    """Every team of the deployment, with its spend this month and its quotas (operators)."""
    views = operators.list_teams(session, principal, get_settings())
    return TeamPage(items=[TeamRead.of(view) for view in views])


@teams_router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=TeamCreated, responses=documented(409)
)
def create_team(
    body: TeamCreate, principal: Operator, session: SessionDep, response: Response
) -> TeamCreated:
    """Create a team and its first admin key, whose token is in this response only."""
    issued = operators.create_team(session, principal, body.name)
    session.flush()
    view = operators.team_view(session, issued.team, get_settings())
    response.headers["Location"] = f"{teams_router.prefix}/{issued.team.name}"
    return TeamCreated(
        team=TeamRead.of(view),
        admin_key=KeyCreated(key=KeyRead.of(issued.view, current=False), token=issued.token),
    )


@teams_router.get("/{name}", response_model=TeamRead)
def get_team(principal: Operator, session: SessionDep, name: str = Path(max_length=64)) -> TeamRead:
    """One team, with its spend this month and its quotas."""
    return TeamRead.of(operators.get_team(session, principal, name, get_settings()))


@teams_router.patch("/{name}", response_model=TeamRead)
def set_quotas(
    body: TeamQuotas,
    principal: Operator,
    session: SessionDep,
    name: str = Path(max_length=64),
) -> TeamRead:
    """Set a team's quotas; a field left out keeps its value, null gives back the
    deployment's. They bind the team's next submission."""
    changes = {field: getattr(body, field) for field in body.model_fields_set}
    view = operators.set_quotas(session, principal, name, get_settings(), **changes)
    return TeamRead.of(view)
