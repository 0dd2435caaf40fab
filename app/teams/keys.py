"""API key format, pure: ``pf_<prefix>_<secret>``; the prefix finds the row, the hash proves it."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    READ = "read"
    SUBMIT = "submit"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        order = [Role.READ, Role.SUBMIT, Role.ADMIN]
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
