"""Dashboard sign-in: an admin API key, exchanged for a signed session cookie.

The cookie holds the key's id, the session's CSRF token and when the session began, signed
with a secret every API process of the deployment shares (kept in the ``deployment`` table,
made once). It is re-signed on every request, so a session ends after ``admin_idle_minutes``
without one, and ``admin_session_hours`` after sign-in at the latest. Each request checks
the key again: a revoked or expired key, or one no longer an admin, ends its sessions at once.
"""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from app.admin import repository
from app.core.errors import Unauthorized
from app.core.settings import Settings
from app.models import ApiKey
from app.models.base import utcnow
from app.teams import keys
from app.teams.keys import KeyState, Role
from app.teams.service import Principal, authenticate

COOKIE = "pf_admin"
LOGIN_COOKIE = "pf_admin_login"  # the sign-in form's own CSRF token, before any session
_SECRET_KEY = "admin_session_secret"
_SALT = "priorforge.admin.session"


@dataclass(frozen=True)
class AdminSession:
    principal: Principal
    key_prefix: str
    csrf: str
    began: float  # seconds since the epoch


_secrets: dict[str, str] = {}  # by database: written once, so read once per process


def _secret(session: Session) -> str:
    database = str(session.get_bind().engine.url)
    if database not in _secrets:
        _secrets[database] = repository.session_secret(session, _SECRET_KEY)
    return _secrets[database]


def _serializer(session: Session) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_secret(session), salt=_SALT)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class SignInRefused(Exception):
    """The key cannot open a dashboard session; the message says why, for the form."""


def sign_in(session: Session, token: str) -> AdminSession:
    """Open a session for an admin key (checked as the API checks a bearer key)."""
    try:
        principal = authenticate(session, token.strip())
    except Unauthorized as refused:
        raise SignInRefused(refused.detail) from None
    if not principal.role.allows(Role.ADMIN):
        raise SignInRefused(
            f"this API key has role {principal.role.value!r}; the dashboard needs an admin key"
        )
    key = session.get(ApiKey, principal.key_id)
    assert key is not None
    return AdminSession(principal, key.prefix, new_token(), time.time())


def encode(session: Session, admin: AdminSession) -> str:
    payload = [str(admin.principal.key_id), admin.csrf, admin.began]
    return str(_serializer(session).dumps(payload))


def decode(session: Session, cookie: str | None, settings: Settings) -> AdminSession | None:
    """The session a cookie names, if it is still open and its key still an admin's."""
    if not cookie:
        return None
    try:
        key_id, csrf, began = _serializer(session).loads(
            cookie, max_age=int(settings.admin_idle_minutes * 60)
        )
        key_uuid = uuid.UUID(str(key_id))
    except (BadSignature, ValueError, TypeError):
        return None
    if time.time() - float(began) > settings.admin_session_hours * 3600:
        return None
    key = session.get(ApiKey, key_uuid)
    if key is None or keys.state(key.revoked_at, key.expires_at, utcnow()) is not KeyState.ACTIVE:
        return None
    role = Role(key.role)
    if not role.allows(Role.ADMIN):
        return None
    principal = Principal(team_id=key.team_id, role=role, key_id=key.id)
    return AdminSession(principal, key.prefix, str(csrf), float(began))
