"""Teams and API keys."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from app.core.errors import InvalidRequest, NotFound, Unauthorized
from app.models import ApiKey, Team
from app.models.base import utcnow
from app.teams import keys, repository
from app.teams.keys import Role

TEAM_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    team_id: uuid.UUID
    role: Role
    key_id: uuid.UUID


@dataclass(frozen=True)
class IssuedKey:
    team: Team
    role: Role
    token: str


def ensure_team(session: Session, name: str) -> Team:
    if not TEAM_NAME.match(name):
        raise InvalidRequest(
            f"team name {name!r} must be 1-64 characters of a-z, 0-9, '.', '_' or '-'"
        )
    return repository.get_team_by_name(session, name) or repository.add_team(session, name)


def find_team(session: Session, name: str) -> Team:
    team = repository.get_team_by_name(session, name)
    if team is None:
        raise NotFound(f"no team named {name!r}")
    return team


def create_key(session: Session, team_name: str, role: Role) -> IssuedKey:
    team = ensure_team(session, team_name)
    new = keys.generate()
    repository.add_key(
        session,
        ApiKey(
            team_id=team.id,
            role=role.value,
            prefix=new.prefix,
            secret_sha256=keys.digest(new.token),
        ),
    )
    return IssuedKey(team=team, role=role, token=new.token)


def authenticate(session: Session, token: str) -> Principal:
    prefix = keys.parse_prefix(token)
    key = repository.get_key_by_prefix(session, prefix) if prefix else None
    if key is None or key.revoked_at is not None or not keys.matches(token, key.secret_sha256):
        raise Unauthorized("missing, malformed, unknown or revoked API key")
    now = utcnow()
    repository.touch_key(session, key.id, now, now - timedelta(minutes=1))
    return Principal(team_id=key.team_id, role=Role(key.role), key_id=key.id)
