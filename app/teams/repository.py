from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from app.models import ApiKey, Team


def get_team_by_name(session: Session, name: str) -> Team | None:
    return session.scalars(select(Team).where(Team.name == name)).one_or_none()


def list_teams(session: Session) -> list[Team]:
    """Every team, by name."""
    return list(session.scalars(select(Team).order_by(Team.name)))


def add_team(session: Session, name: str) -> Team:
    team = Team(name=name)
    session.add(team)
    session.flush()
    return team


def add_key(session: Session, key: ApiKey) -> ApiKey:
    session.add(key)
    session.flush()
    return key


# Built once: every authenticated request runs it.
_KEY_BY_PREFIX = select(ApiKey).where(ApiKey.prefix == bindparam("prefix"))


def get_key_by_prefix(session: Session, prefix: str) -> ApiKey | None:
    return session.scalars(_KEY_BY_PREFIX, {"prefix": prefix}).one_or_none()


def get_key_with_team(
    session: Session, prefix: str, *, for_update: bool = False
) -> tuple[ApiKey, Team] | None:
    query = select(ApiKey, Team).join(Team, Team.id == ApiKey.team_id)
    query = query.where(ApiKey.prefix == prefix)
    if for_update:
        # populate_existing: the caller's own key may already sit in the session, stale.
        query = query.with_for_update(of=ApiKey).execution_options(populate_existing=True)
    row = session.execute(query).one_or_none()
    return (row[0], row[1]) if row is not None else None


def get_team(session: Session, team_id: uuid.UUID) -> Team | None:
    return session.get(Team, team_id)


def list_keys(
    session: Session, team_id: uuid.UUID | None, *, active_at: datetime | None
) -> list[tuple[ApiKey, str]]:
    """Keys with their team's name, newest first; ``active_at`` leaves out revoked and expired."""
    query = select(ApiKey, Team.name).join(Team, Team.id == ApiKey.team_id)
    if team_id is not None:
        query = query.where(ApiKey.team_id == team_id)
    if active_at is not None:
        query = query.where(ApiKey.revoked_at.is_(None)).where(
            ApiKey.expires_at.is_(None) | (ApiKey.expires_at > active_at)
        )
    query = query.order_by(ApiKey.created_at.desc(), ApiKey.prefix)
    return [(key, name) for key, name in session.execute(query)]


def get_key(session: Session, key_id: uuid.UUID) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def mark_replaced(
    session: Session, key: ApiKey, successor: ApiKey, *, expires_at: datetime | None
) -> None:
    """Record the key's successor; with ``expires_at`` it also stops then, unless sooner."""
    values: dict[str, object] = {"replaced_by_id": successor.id}
    if expires_at is not None and (key.expires_at is None or key.expires_at > expires_at):
        values["expires_at"] = expires_at
    session.execute(update(ApiKey).where(ApiKey.id == key.id).values(**values))
    session.refresh(key)


def revoke_key(session: Session, key: ApiKey, when: datetime) -> None:
    # Guarded: revoking again keeps the first revoked_at.
    session.execute(
        update(ApiKey)
        .where(ApiKey.id == key.id)
        .where(ApiKey.revoked_at.is_(None))
        .values(revoked_at=when)
    )
    session.refresh(key)


def touch_key(session: Session, key_id: object, when: datetime, not_since: datetime) -> None:
    # Throttled: at most one write per key per minute, however busy the key is.
    session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .where((ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < not_since))
        .values(last_used_at=when)
    )
