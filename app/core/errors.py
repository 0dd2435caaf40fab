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


class UnknownReference(Conflict):
    """A valid request naming something the server does not have (yet): 409, not 422.

    422 says the request itself is wrong (the OpenAPI schema could have told); 409 says it
    conflicts with what is stored - a scenario not imported, a set not registered.
    """

    title = "Unknown reference"
    slug = "unknown-reference"


class InvalidRequest(PriorForgeError):
    status = 422
    title = "Invalid request"
    slug = "invalid-request"


class ContentTooLarge(PriorForgeError):
    status = 413
    title = "Content too large"
    slug = "content-too-large"


class UnsupportedMediaType(PriorForgeError):
    status = 415
    title = "Unsupported media type"
    slug = "unsupported-media-type"


class IdempotencyKeyReused(InvalidRequest):
    title = "Idempotency key reused with a different request"
    slug = "idempotency-key-reused"


class OverQuota(PriorForgeError):
    """A team is past one of its limits for now: retry after ``retry_after`` seconds."""

    status = 429
    title = "Over quota"
    slug = "over-quota"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


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
