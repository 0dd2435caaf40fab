"""Teams and API keys.

Functions that take ``team_id`` confine themselves to that team (another team's key is a
404); ``team_id=None`` is the operator's command line, which sees every team.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from app.core.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthorized
from app.core.text import NOT_BLANK
from app.models import ApiKey, Team
from app.models.base import utcnow
from app.teams import keys, repository
from app.teams.keys import KeyState, Role

TEAM_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_NAME = 100
MAX_LIFETIME = timedelta(days=100 * 365)
MAX_GRACE = timedelta(days=30)
NEW_KEY_HINT = "ask a team admin for a new key (POST /v1/keys or 'priorforge keys create')"


@dataclass(frozen=True)
class Principal:
    team_id: uuid.UUID
    role: Role
    key_id: uuid.UUID


@dataclass(frozen=True)
class KeyView:
    """A key as it may be shown: never its secret or hash, which only ``key`` holds."""

    key: ApiKey
    team: str
    state: KeyState


@dataclass(frozen=True)
class IssuedKey:
    team: Team
    role: Role
    token: str
    view: KeyView


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


def when(instant: datetime | None) -> str:
    return instant.isoformat(timespec="seconds") if instant is not None else "-"


def create_key(
    session: Session,
    team_name: str,
    role: Role,
    *,
    name: str | None = None,
    expires_at: datetime | None = None,
) -> IssuedKey:
    """A new key for the named team (created if missing); the token is in the result only."""
    return _issue(session, ensure_team(session, team_name), role, name, expires_at)


def issue_key(
    session: Session,
    principal: Principal,
    role: Role,
    *,
    name: str | None = None,
    expires_at: datetime | None = None,
) -> IssuedKey:
    """A new key for the caller's own team, never with a role above the caller's."""
    if not principal.role.allows(role):
        raise Forbidden(
            f"a {principal.role.value!r} key cannot create a {role.value!r} key; "
            "choose an equal or lower role"
        )
    team = repository.get_team(session, principal.team_id)
    if team is None:
        raise NotFound("the team of this API key no longer exists")
    return _issue(session, team, role, name, expires_at)


def _issue(
    session: Session, team: Team, role: Role, name: str | None, expires_at: datetime | None
) -> IssuedKey:
    now = utcnow()
    if name is not None and (not re.fullmatch(NOT_BLANK, name) or len(name) > MAX_NAME):
        raise InvalidRequest(
            f"the key's name must be 1-{MAX_NAME} characters, not blank, no NUL (got {name!r})"
        )
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidRequest("the expiry needs a UTC offset, e.g. 2027-01-31T00:00:00Z")
        try:
            expires_at = expires_at.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:00-05:00 is past the calendar's end
            raise InvalidRequest(f"the expiry {expires_at.isoformat()} is out of range") from None
        if expires_at > now + MAX_LIFETIME:
            raise InvalidRequest(
                f"the expiry {when(expires_at)} is more than {MAX_LIFETIME.days // 365} years "
                "away; choose an earlier time"
            )
        if expires_at <= now:
            raise InvalidRequest(
                f"the expiry {when(expires_at)} is not in the future (now is {when(now)}); "
                "choose a later time"
            )
    new = keys.generate()
    key = repository.add_key(
        session,
        ApiKey(
            team_id=team.id,
            role=role.value,
            prefix=new.prefix,
            secret_sha256=keys.digest(new.token),
            name=name,
            expires_at=expires_at,
            created_at=now,
        ),
    )
    return IssuedKey(team=team, role=role, token=new.token, view=_view(key, team.name, now))


def _view(key: ApiKey, team_name: str, now: datetime) -> KeyView:
    return KeyView(key=key, team=team_name, state=keys.state(key.revoked_at, key.expires_at, now))


def list_keys(
    session: Session, *, team_id: uuid.UUID | None, include_inactive: bool = False
) -> list[KeyView]:
    """Newest first; revoked and expired keys only with ``include_inactive``."""
    now = utcnow()
    rows = repository.list_keys(session, team_id, active_at=None if include_inactive else now)
    return [_view(key, team_name, now) for key, team_name in rows]


def _find(
    session: Session, prefix: str, team_id: uuid.UUID | None, *, for_update: bool = False
) -> tuple[ApiKey, Team]:
    found = repository.get_key_with_team(session, prefix, for_update=for_update)
    if found is None or (team_id is not None and found[0].team_id != team_id):
        raise NotFound(f"no API key with prefix {prefix!r}" + (" in this team" if team_id else ""))
    return found


def get_key(session: Session, prefix: str, *, team_id: uuid.UUID | None) -> KeyView:
    key, team = _find(session, prefix, team_id)
    return _view(key, team.name, utcnow())


def _may_manage(key: ApiKey, role: Role | None, action: str) -> None:
    """A key may only revoke or rotate keys of a role it could create: an admin who rotated
    an operator's key would hold the new operator token (``role`` None: the command line)."""
    if role is not None and not role.allows(Role(key.role)):
        raise Forbidden(f"a {role.value!r} key cannot {action} a {key.role!r} key; ask an operator")


def revoke_key(
    session: Session, prefix: str, *, team_id: uuid.UUID | None, role: Role | None = None
) -> KeyView:
    """Refuse the key from now on; revoking it again changes nothing."""
    key, team = _find(session, prefix, team_id)
    _may_manage(key, role, "revoke")
    now = utcnow()
    repository.revoke_key(session, key, now)
    return _view(key, team.name, now)


def rotate_key(
    session: Session,
    prefix: str,
    *,
    team_id: uuid.UUID | None,
    grace: timedelta | None = None,
    role: Role | None = None,
) -> tuple[IssuedKey, KeyView]:
    """A new key with the old one's team, role and name; the old one is revoked at once, or
    with a ``grace`` period keeps working until it expires then. Returns (new, old)."""
    if grace is not None and not timedelta(0) <= grace <= MAX_GRACE:
        raise InvalidRequest(f"the grace period must be between 0 and {MAX_GRACE.days} days")
    # Locked, so that of two rotations of one key at once the second sees the first's mark.
    key, team = _find(session, prefix, team_id, for_update=True)
    _may_manage(key, role, "rotate")
    now = utcnow()
    current = keys.state(key.revoked_at, key.expires_at, now)
    if current is not KeyState.ACTIVE:
        raise Conflict(
            f"API key {prefix} is {current.value}; rotate only an active key, or create a new "
            "one ('priorforge keys create' or POST /v1/keys)",
            state=current.value,
        )
    if key.replaced_by_id is not None:
        successor = repository.get_key(session, key.replaced_by_id)
        raise Conflict(
            f"API key {prefix} was already rotated"
            + (f"; its replacement is {successor.prefix}: rotate that one" if successor else ""),
            replaced_by=successor.prefix if successor else None,
        )
    issued = _issue(session, team, Role(key.role), key.name, None)
    repository.mark_replaced(
        session, key, issued.view.key, expires_at=now + grace if grace else None
    )
    if not grace:
        repository.revoke_key(session, key, now)
    return issued, _view(key, team.name, now)


def authenticate(session: Session, token: str) -> Principal:
    prefix = keys.parse_prefix(token)
    key = repository.get_key_by_prefix(session, prefix) if prefix else None
    # The secret is checked before anything about the key is told: only its holder learns
    # that it was revoked or has expired.
    if key is None or not keys.matches(token, key.secret_sha256):
        raise Unauthorized(f"malformed or unknown API key; {NEW_KEY_HINT}")
    now = utcnow()
    state = keys.state(key.revoked_at, key.expires_at, now)
    if state is KeyState.REVOKED:
        raise Unauthorized(
            f"API key {key.prefix} was revoked at {when(key.revoked_at)}; {NEW_KEY_HINT}",
            state=state.value,
        )
    if state is KeyState.EXPIRED:
        raise Unauthorized(
            f"API key {key.prefix} expired at {when(key.expires_at)}; {NEW_KEY_HINT}",
            state=state.value,
        )
    stale = now - timedelta(minutes=1)
    if key.last_used_at is None or key.last_used_at < stale:  # no write on most requests
        repository.touch_key(session, key.id, now, stale)
    return Principal(team_id=key.team_id, role=Role(key.role), key_id=key.id)
