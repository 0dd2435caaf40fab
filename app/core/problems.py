"""Render every error as ``application/problem+json`` (RFC 9457), with the request's id.

``RequestContext`` is the outermost application middleware: it gives each request an id
(echoed in ``X-Request-ID`` and in every problem body) and turns any exception that nothing
else handled into a 500 problem, logging the traceback under the same id.
"""

from __future__ import annotations

import logging
import re
import uuid
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import OverQuota, PriorForgeError, RangeNotSatisfiable

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
log = logging.getLogger(__name__)


DESCRIPTIONS = {
    409: "Valid, but conflicts with what is stored (an unknown or taken name, a state).",
    503: "A dependency or the server's configuration is missing; the detail names the fix.",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for the statuses a route's services answer beyond the guard's own
    (app/core/openapi.py documents those, and renders every error status as a problem)."""
    return {s: {"description": DESCRIPTIONS.get(s, HTTPStatus(s).phrase)} for s in statuses}


def request_id(scope: Scope) -> str | None:
    state = scope.get("state") or {}
    value = state.get("request_id")
    return value if isinstance(value, str) else None


def problem(
    status: int,
    title: str,
    detail: str,
    type_uri: str = "about:blank",
    *,
    scope: Scope | None = None,
    **extensions: Any,
) -> JSONResponse:
    body = {"type": type_uri, "title": title, "status": status, "detail": detail, **extensions}
    rid = request_id(scope) if scope is not None else None
    if rid is not None:
        body["request_id"] = rid
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


class RequestContext:
    """Request ids, and the last line of defence: no error ever leaves as a bare 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                sent = value.decode("latin-1")
        rid = sent if _CLIENT_REQUEST_ID.match(sent) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [
                    *message.get("headers", ()),
                    (REQUEST_ID_HEADER.lower().encode(), rid.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            down = unreachable_dependency(exc)
            if down is not None and not started:
                log.warning("request %s: %s is unreachable: %s", rid, down, exc)
                response = problem(
                    503,
                    "Service unavailable",
                    f"{down} is unreachable; nothing was changed by this request unless it "
                    "says so. Try again shortly (an Idempotency-Key makes a retried POST safe)",
                    "https://priorforge.dev/problems/unavailable",
                    scope=scope,
                )
                response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
                await response(scope, receive, send_with_id)
                return
            log.exception("request %s: %s %s failed", rid, scope.get("method"), scope.get("path"))
            if started:
                raise  # the response is under way; the server closes the connection
            response = problem(
                500,
                "Internal error",
                f"the server failed to handle this request; quote request id {rid} "
                "when you report it",
                "https://priorforge.dev/problems/internal",
                scope=scope,
            )
            await response(scope, receive, send_with_id)


RETRY_AFTER_SECONDS = 5


def unreachable_dependency(exc: BaseException) -> str | None:
    """'the database' or 'the broker' when ``exc`` (or what caused it) says that service
    cannot be reached; None for any other failure, which stays a 500."""
    import sqlalchemy.exc

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            return "the database"
        if isinstance(current, sqlalchemy.exc.TimeoutError):  # no pooled connection came free
            return "the database"
        module = type(current).__module__
        if module.startswith(("redis", "kombu")) and "Connection" in type(current).__name__:
            return "the broker"
        if module.startswith("kombu") and type(current).__name__ == "OperationalError":
            return "the broker"
        current = current.__cause__ or current.__context__
    return None


def _describe(error: dict[str, Any]) -> dict[str, Any]:
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body",)]
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "json_invalid":  # FastAPI's own JSON decoding: loc is an offset
        return {"field": "(body)", "message": f"not valid JSON: {error.get('ctx', {})}"}
    if loc and loc[-1] == "[key]":  # a bad mapping key, e.g. an unknown stance name
        loc = loc[:-1]
        message = f"{loc[-1]!r} is not allowed here: {message}" if loc else message
    return {"field": ".".join(loc) or "(body)", "message": message}


def install(app: FastAPI) -> None:
    app.add_middleware(RequestContext)

    @app.exception_handler(PriorForgeError)
    async def _domain(request: Request, exc: PriorForgeError) -> JSONResponse:
        if exc.status >= 500:
            log.error(
                "request %s: %s %s failed: %s",
                request_id(request.scope),
                request.method,
                request.url.path,
                exc.detail,
            )
        response = problem(
            exc.status, exc.title, exc.detail, exc.type_uri, scope=request.scope, **exc.extensions
        )
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        if isinstance(exc, OverQuota):
            response.headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, RangeNotSatisfiable):
            response.headers["Content-Range"] = f"bytes */{exc.extensions.get('size', '*')}"
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_describe(dict(e)) for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(
            422,
            "Invalid request",
            detail,
            "https://priorforge.dev/problems/invalid-request",
            scope=request.scope,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        detail = str(exc.detail)
        if exc.status_code == 405:
            allowed = _allowed_methods(request)
            headers["Allow"] = ", ".join(allowed)
            detail = f"{request.method} is not allowed here; use {' or '.join(allowed)}"
        elif exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.url.path} (see /docs)"
        response = problem(exc.status_code, _title(exc.status_code), detail, scope=request.scope)
        for name, value in headers.items():
            response.headers[name] = value
        return response


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        match, _child = route.matches(request.scope)  # PARTIAL: the path matches, not the method
        if match != Match.NONE:
            methods |= set(route.methods or ())
    return sorted(methods)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
