"""Bearer API-key authentication as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.core.db import get_sessionmaker
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


def _principal(request: Request, session: SessionDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "send 'Authorization: Bearer <api key>' (create one with 'priorforge keys create')"
        )
    return authenticate(session, token.strip())


def require(role: Role) -> Callable[[Principal], Principal]:
    def dependency(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        if not principal.role.allows(role):
            raise Forbidden(
                f"this API key has role {principal.role.value!r}; {role.value!r} is needed"
            )
        return principal

    return dependency


Reader = Annotated[Principal, Depends(require(Role.READ))]
Submitter = Annotated[Principal, Depends(require(Role.SUBMIT))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
