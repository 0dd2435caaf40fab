"""Bearer API-key authentication, and the request's unit of work, as FastAPI dependencies.

The route guard (app/core/routing.py) authenticates every request before its body is read and
leaves the principal on ``request.state``; the dependencies below hand it to the endpoint and
enforce the role the endpoint declares.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.core.db import get_sessionmaker, session_scope
from app.core.errors import Forbidden, Unauthorized
from app.teams.keys import Role
from app.teams.service import Principal, authenticate

SESSION_STATE = "db_session"


async def db_session(request: Request) -> AsyncIterator[Session]:
    """The request's unit of work: commits before the response is sent, or rolls back.

    The route guard opened it to authenticate (one session, one connection and one
    transaction per request); the blocking end runs off the event loop, in one hop.
    """
    session = getattr(request.state, SESSION_STATE, None)
    if isinstance(session, Session):
        delattr(request.state, SESSION_STATE)  # ours to end now, not the guard's
    else:
        session = get_sessionmaker()()
    try:
        yield session
    except BaseException:
        await finish(session, commit=False)
        raise
    await finish(session, commit=True)


async def finish(session: Session, *, commit: bool) -> None:
    """End a request's session: off the event loop, unless it cannot block.

    A reading session commits every statement as it runs (autocommit): ending it sends
    nothing to the database, so it ends here rather than in a worker thread.
    """
    if session.get_bind().get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        end_session(session, commit=commit)
    else:
        await run_in_threadpool(end_session, session, commit=commit)


def end_session(session: Session, *, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
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


def authenticate_request(authorization: str | None, session: Session | None = None) -> Principal:
    """Check the request's key (blocking: call off the loop), in the request's session if
    given, else in a unit of work of its own."""
    token = bearer_token(authorization)
    if session is not None:
        return authenticate(session, token)
    with session_scope() as own:
        return authenticate(own, token)


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
Operator = Annotated[Principal, Depends(require(Role.OPERATOR))]
