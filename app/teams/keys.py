"""API key format, pure: ``pf_<prefix>_<secret>``; the prefix finds the row, the hash proves it."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum


class Role(StrEnum):
    READ = "read"
    SUBMIT = "submit"
    ADMIN = "admin"
    # An admin of its own team, and of the deployment: it lists and creates teams and sets
    # each team's quotas (a team's admins set its budget, not its quotas).
    OPERATOR = "operator"

    def allows(self, needed: Role) -> bool:
        order = [Role.READ, Role.SUBMIT, Role.ADMIN, Role.OPERATOR]
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class NewKey:
    prefix: str
    secret: str

    @property
    def token(self) -> str:
        return f"pf_{self.prefix}_{self.secret}"


def generate() -> NewKey:
    return NewKey(prefix=secrets.token_hex(6), secret=secrets.token_urlsafe(32))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_prefix(token: str) -> str | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "pf" or len(parts[1]) != 12 or not parts[2]:
        return None
    return parts[1]


def matches(token: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(token), stored_digest)


class KeyState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


def state(revoked_at: datetime | None, expires_at: datetime | None, now: datetime) -> KeyState:
    """Revocation wins over expiry: a revoked key stays revoked whatever its expiry says."""
    if revoked_at is not None:
        return KeyState.REVOKED
    if expires_at is not None and expires_at <= now:
        return KeyState.EXPIRED
    return KeyState.ACTIVE


PREFIX_PATTERN = r"^[0-9a-f]{12}$"
_DURATION_PART = re.compile(r"(\d{1,9})([wdhms])")
_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
MAX_DURATION = timedelta(days=100 * 365)


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``1d12h``... (units w, d, h, m, s) as a timedelta."""
    compact = text.strip().lower()
    parts = _DURATION_PART.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(
            f"{text!r} is not a duration: use a number and a unit, e.g. 90d, 12h, 30m or 1d12h"
        )
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{text!r} is longer than {MAX_DURATION.days} days")
    return timedelta(seconds=seconds)


def parse_instant(text: str) -> datetime:
    """An ISO-8601 time with a UTC offset (``2027-01-31T00:00:00Z``), in UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO-8601 time: use e.g. 2027-01-31T00:00:00Z"
        ) from None
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset: add one, e.g. {text.strip()}Z")
    return value.astimezone(UTC)
