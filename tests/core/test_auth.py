"""The authentication dependencies on their own: the bearer header, the role check, and what
``require`` hands FastAPI (the route guard reads the role it carries)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.auth import (
    ROLE_ATTRIBUTE,
    Reader,
    SessionDep,
    Submitter,
    bearer_token,
    check_role,
    require,
)
from app.core.db import session_scope
from app.core.errors import Forbidden, Unauthorized
from app.models import Team as TeamRow
from app.teams.keys import Role
from app.teams.service import Principal
from tests.conftest import Team

HOW = "send 'Authorization: Bearer <api key>' (create one with 'priorforge keys create')"


def principal(role: Role) -> Principal:
    return Principal(team_id=uuid.uuid4(), role=role, key_id=uuid.uuid4())


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer pf_abc.def", "pf_abc.def"), ("bearer  pf_abc.def ", "pf_abc.def"),
     ("BEARER x", "x")],
)  # fmt: skip
def test_the_token_is_what_follows_the_bearer_scheme(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic abc", "Bearerabc"])
def test_anything_else_is_401_saying_how_to_send_a_key(header: str | None) -> None:
    with pytest.raises(Unauthorized) as caught:
        bearer_token(header)
    assert caught.value.detail == HOW


def test_a_role_allows_itself_and_those_below_it_only() -> None:
    admin = principal(Role.ADMIN)
    assert check_role(admin, Role.READ) is admin
    assert check_role(admin, Role.ADMIN) is admin
    with pytest.raises(Forbidden) as caught:
        check_role(principal(Role.READ), Role.SUBMIT)
    assert caught.value.detail == "this API key has role 'read'; 'submit' is needed"


@pytest.mark.parametrize("role", list(Role))
def test_require_gives_a_dependency_that_carries_its_role_and_checks_it(role: Role) -> None:
    dependency = require(role)
    assert getattr(dependency, ROLE_ATTRIBUTE) is role

    async def call(caller: Principal) -> Principal:
        return await dependency(caller)

    for held in Role:
        caller = principal(held)
        if held.allows(role):
            assert asyncio.run(call(caller)) is caller
        else:
            with pytest.raises(Forbidden):
                asyncio.run(call(caller))


def test_a_route_outside_the_guard_authenticates_and_owns_its_unit_of_work(team: Team) -> None:
    """Every API route is behind the route guard; one that is not (a plugin's, say) still
    authenticates from the header and gets a session that commits on success and rolls back
    when the endpoint raises."""
    app = FastAPI()
    name = f"unguarded-{uuid.uuid4().hex[:8]}"

    @app.get("/who")
    def who(principal: Reader, session: SessionDep) -> dict[str, str]:
        assert session.is_active
        return {"team": str(principal.team_id)}

    @app.post("/teams/{made}")
    def make(made: str, _caller: Submitter, session: SessionDep) -> None:
        session.add(TeamRow(name=made))
        session.flush()
        if made.endswith("-fail"):
            raise RuntimeError("the endpoint failed after writing")

    with TestClient(app) as client:
        assert client.get("/who", headers=team.headers("read")).json() == {"team": str(team.id)}
        with pytest.raises(Unauthorized):
            client.get("/who")
        with pytest.raises(Forbidden):
            client.post(f"/teams/{name}", headers=team.headers("read"))
        assert client.post(f"/teams/{name}", headers=team.headers("submit")).status_code == 200
        with pytest.raises(RuntimeError):
            client.post(f"/teams/{name}-fail", headers=team.headers("submit"))
    with session_scope() as session:
        stored = set(session.scalars(select(TeamRow.name).where(TeamRow.name.startswith(name))))
    assert stored == {name}  # committed, and the failed request's write rolled back
