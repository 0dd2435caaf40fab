"""Render every error as ``application/problem+json`` (RFC 9457)."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import PriorForgeError, RangeNotSatisfiable

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


def problem(
    status: int, title: str, detail: str, type_uri: str = "about:blank", **extensions: Any
) -> JSONResponse:
    body = {"type": type_uri, "title": title, "status": status, "detail": detail, **extensions}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _describe(error: dict[str, Any]) -> dict[str, Any]:
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body",)]
    message = str(error.get("msg", "invalid"))
    if loc and loc[-1] == "[key]":  # a bad mapping key, e.g. an unknown stance name
        loc = loc[:-1]
        message = f"{loc[-1]!r} is not allowed here: {message}" if loc else message
    return {"field": ".".join(loc) or "(body)", "message": message}


def install(app: FastAPI) -> None:
    @app.exception_handler(PriorForgeError)
    async def _domain(request: Request, exc: PriorForgeError) -> JSONResponse:
        if exc.status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc.detail)
        response = problem(exc.status, exc.title, exc.detail, exc.type_uri, **exc.extensions)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        if isinstance(exc, RangeNotSatisfiable):
            response.headers["Content-Range"] = f"bytes */{exc.extensions.get('size', '*')}"
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_describe(dict(e)) for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(
            422,
            "Invalid request",
            detail,
            "https://priorforge.dev/problems/invalid-request",
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = problem(exc.status_code, _title(exc.status_code), str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
