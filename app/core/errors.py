"""Domain errors. Services raise these; one handler renders them as RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any, ClassVar


class PriorForgeError(Exception):
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    slug: ClassVar[str] = "internal"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    @property
    def type_uri(self) -> str:
        return f"https://priorforge.dev/problems/{self.slug}"


class Unauthorized(PriorForgeError):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class Forbidden(PriorForgeError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(PriorForgeError):
    status = 404
    title = "Not found"
    slug = "not-found"


class Conflict(PriorForgeError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class InvalidRequest(PriorForgeError):
    status = 422
    title = "Invalid request"
    slug = "invalid-request"


class IdempotencyKeyReused(InvalidRequest):
    title = "Idempotency key reused with a different request"
    slug = "idempotency-key-reused"


class RangeNotSatisfiable(PriorForgeError):
    status = 416
    title = "Range not satisfiable"
    slug = "range-not-satisfiable"


class ServiceUnavailable(PriorForgeError):
    status = 503
    title = "Service unavailable"
    slug = "unavailable"


class ConfigurationError(PriorForgeError):
    """The server (or CLI) is missing configuration; the message names the fix."""

    status = 503
    title = "Not configured"
    slug = "not-configured"
