"""One guard in front of every API endpoint, so that no endpoint can forget a check.

Before any endpoint code runs, in this order:
1. the API key is checked, and the endpoint's role (401, 403) - before the body is read, so
   an unauthenticated client cannot make the server read, buffer or parse anything;
2. path and query parameters are checked for text a database cannot store (422);
3. the body, if the endpoint takes one: its media type (415), then its bytes, read as they
   stream in and refused as soon as they pass the endpoint's limit (413);
4. a JSON body is parsed once and every string in it checked (422).
Every router uses ``GuardedRoute``; tests/core/test_guard.py checks that none is left out.
"""

from __future__ import annotations

import email.message
import functools
import inspect
import math
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from app.core.auth import (
    ROLE_ATTRIBUTE,
    SESSION_STATE,
    authenticate_request,
    check_role,
    finish,
)
from app.core.body import DEFAULT_MAX_BODY_BYTES, MAX_BODY_KEY, MiB
from app.core.db import get_reading_sessionmaker, get_sessionmaker
from app.core.errors import ContentTooLarge, InvalidRequest, OverQuota, UnsupportedMediaType
from app.core.ratelimit import request_rate
from app.core.settings import get_settings
from app.core.text import InvalidJSON, find_unstorable, parse_json, text_problem
from app.teams.keys import Role
from app.teams.service import Principal

JSON_MEDIA_TYPE = "application/json"
_UNSET: Any = object()


class GuardedRequest(Request):
    """The request once guarded: its body already read, and its JSON already parsed."""

    def __init__(self, request: Request, body: bytes, parsed: Any = _UNSET) -> None:
        super().__init__(request.scope, request.receive)
        self._guarded_body = body
        self._parsed = parsed

    async def body(self) -> bytes:
        return self._guarded_body

    async def stream(self) -> Any:
        yield self._guarded_body
        yield b""

    async def json(self) -> Any:
        if self._parsed is _UNSET:
            self._parsed = _checked_json(self._guarded_body)
        return self._parsed


class GuardedRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, _serialized_in_thread(endpoint, kwargs), **kwargs)
        extra = self.openapi_extra or {}
        self.required_role = _required_role(self.dependant)
        self.max_body_bytes: int = extra.get(MAX_BODY_KEY, DEFAULT_MAX_BODY_BYTES)
        raw = extra.get("requestBody", {}).get("content")
        # An endpoint reads either a JSON model (FastAPI parses it) or a declared raw body.
        self.raw_media_types: tuple[str, ...] | None = tuple(raw) if raw else None
        self.takes_body = self.body_field is not None or self.raw_media_types is not None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(await self.guard(request))
            finally:
                # Refused before the endpoint's session dependency took the session over.
                leftover = getattr(request.state, SESSION_STATE, None)
                if leftover is not None:
                    delattr(request.state, SESSION_STATE)
                    await finish(leftover, commit=False)

        return guarded

    async def guard(self, request: Request) -> Request:
        if self.required_role is not None:
            # The request's one session: the key is checked in it, the endpoint then uses it.
            reading = request.method in ("GET", "HEAD")
            session = (get_reading_sessionmaker() if reading else get_sessionmaker())()
            setattr(request.state, SESSION_STATE, session)
            header = request.headers.get("authorization")
            principal, wait = await run_in_threadpool(_authenticate, header, session)
            request.state.principal = check_role(principal, self.required_role)
            _check_request_rate(wait)
        _check_parameters(request)
        if not self.takes_body:
            return request
        media_type = _media_type(request.headers.get("content-type"))
        self._check_media_type(media_type, request)
        body = await _read_limited(request, self.max_body_bytes, self._describe_limit(request))
        if self.raw_media_types is not None or not body:
            return GuardedRequest(request, body)
        return GuardedRequest(request, body, _checked_json(body))

    def _check_media_type(self, media_type: str | None, request: Request) -> None:
        if self.raw_media_types is not None:
            if media_type is None or media_type in self.raw_media_types:
                return
            allowed = ", ".join(self.raw_media_types)
        else:
            if media_type is not None and _is_json(media_type):
                return
            allowed = JSON_MEDIA_TYPE
        if media_type is None and not _has_body(request):
            return  # nothing sent: the endpoint reports the missing body itself
        raise UnsupportedMediaType(
            f"{request.method} {self.path} takes {allowed}; got "
            f"{media_type or 'no Content-Type'}: send 'Content-Type: {allowed.split(', ')[0]}'",
            accepted=allowed.split(", "),
        )

    def _describe_limit(self, request: Request) -> str:
        limit = self.max_body_bytes
        size = f"{limit // MiB} MiB" if limit % MiB == 0 else f"{limit} bytes"
        return f"the body of {request.method} {self.path} may be at most {size}"


def _authenticate(header: str | None, session: Any) -> tuple[Principal, float]:
    """The request's key (blocking: run off the loop), and how long its team must wait
    before its API request rate admits the request (0: now)."""
    principal = authenticate_request(header, session)
    settings = get_settings()
    quota = request_rate(
        settings.team_max_requests_per_minute, settings.team_request_burst, settings.broker_url
    )
    return principal, (quota.admit(principal.team_id) if quota is not None else 0.0)


def _check_request_rate(wait: float) -> None:
    """429 with Retry-After when the key's team is over its API request rate."""
    if wait > 0:
        per_minute = get_settings().team_max_requests_per_minute
        raise OverQuota(
            f"this team is over its API request rate of {per_minute} requests a minute "
            f"(PRIORFORGE_TEAM_MAX_REQUESTS_PER_MINUTE); retry in {wait:.1f} s",
            retry_after=max(1, math.ceil(wait)),
        )


def _serialized_in_thread(
    endpoint: Callable[..., Any], route: dict[str, Any]
) -> Callable[..., Any]:
    """A plain (thread-run) endpoint that returns its response model already as JSON.

    FastAPI would otherwise validate the returned model again in a second thread hop and
    serialize it on the event loop; the model was built by this endpoint from typed data,
    so it is serialized where it was made. Endpoints that set headers or a status through a
    ``Response`` parameter, or return anything but an instance of exactly their response
    model, keep FastAPI's own path.
    """
    model = route.get("response_model")
    status_code = route.get("status_code") or 200
    if (
        inspect.iscoroutinefunction(endpoint)
        or not (isinstance(model, type) and issubclass(model, BaseModel))
        or any(p.annotation in (Response, "Response") for p in _parameters(endpoint))
    ):
        return endpoint

    @functools.wraps(endpoint)
    def serialized(*args: Any, **kwargs: Any) -> Any:
        result = endpoint(*args, **kwargs)
        if type(result) is not model:
            return result
        return Response(result.model_dump_json(), status_code, media_type=JSON_MEDIA_TYPE)

    return serialized


def _parameters(endpoint: Callable[..., Any]) -> list[inspect.Parameter]:
    return list(inspect.signature(endpoint).parameters.values())


def _required_role(dependant: Dependant) -> Role | None:
    """The role an endpoint's dependencies require (``app.core.auth.require``), if any."""
    stack = [dependant]
    while stack:
        current = stack.pop()
        role = getattr(current.call, ROLE_ATTRIBUTE, None)
        if isinstance(role, Role):
            return role
        stack.extend(current.dependencies)
    return None


def _check_parameters(request: Request) -> None:
    for where, items in (
        ("path", request.path_params.items()),
        ("query", request.query_params.multi_items()),
    ):
        for name, value in _strings(items):
            problem = text_problem(value)
            if problem is not None:
                raise InvalidRequest(
                    f"{where} parameter {name!r} {problem}",
                    errors=[{"field": name, "message": problem}],
                )


def _strings(items: Any) -> Iterator[tuple[str, str]]:
    for name, value in items:
        yield name, str(name)
        if isinstance(value, str):
            yield name, value


def _media_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    message = email.message.Message()
    message["content-type"] = content_type
    return message.get_content_type()


def _is_json(media_type: str) -> bool:
    return media_type == JSON_MEDIA_TYPE or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _has_body(request: Request) -> bool:
    headers = request.headers
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers


async def _read_limited(request: Request, limit: int, describe: str) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ContentTooLarge(f"{describe}; this request declares {declared} bytes", limit=limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ContentTooLarge(f"{describe}; this request sent more", limit=limit)
    return bytes(body)


def _checked_json(body: bytes) -> Any:
    try:
        value = parse_json(body)
    except InvalidJSON as exc:
        raise InvalidRequest(
            f"the body is not valid JSON: {exc}",
            errors=[{"field": "(body)", "message": f"not valid JSON: {exc}"}],
        ) from None
    found = find_unstorable(value)
    if found is not None:
        field, problem = found
        raise InvalidRequest(f"{field}: {problem}", errors=[{"field": field, "message": problem}])
    return value
