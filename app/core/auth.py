"""Bearer API-key authentication, and the request's unit of work, as FastAPI dependencies.

The route guard (app/core/routing.py) authenticates every request before its body is read and
leaves the principal on ``request.state``; the dependencies below hand it to the endpoint and
enforce the role the endpoint declares.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.core.db import get_sessionmaker, session_scope
from app.core.errors import Forbidden, Unauthorized
from app.teams.keys import Role
from app.teams.service import Principal, authenticate


def db_session() -> Iterator[Session]:
    """The request's unit of work: commits before the response is sent, or rolls back."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(db_session, scope="function")]


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "send 'Authorization: Bearer <api key>' (create one with 'priorforge keys create')"
        )
    return token.strip()


def authenticate_request(authorization: str | None) -> Principal:
    """Check the request's key in a unit of work of its own (blocking: call off the loop)."""
    token = bearer_token(authorization)
    with session_scope() as session:
        return authenticate(session, token)


def check_role(principal: Principal, needed: Role) -> Principal:
    if not principal.role.allows(needed):
        raise Forbidden(
            f"this API key has role {principal.role.value!r}; {needed.value!r} is needed"
        )
    return principal


async def _principal(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal):
        return principal
    # Only a route outside the guard gets here; it authenticates the same way.
    return await run_in_threadpool(authenticate_request, request.headers.get("authorization"))


# Read by the route guard, so it can refuse a request before reading its body.
ROLE_ATTRIBUTE = "priorforge_required_role"


def require(role: Role) -> Callable[[Principal], Awaitable[Principal]]:
    async def dependency(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        return check_role(principal, role)

    setattr(dependency, ROLE_ATTRIBUTE, role)
    return dependency


Reader = Annotated[Principal, Depends(require(Role.READ))]
Submitter = Annotated[Principal, Depends(require(Role.SUBMIT))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
