"""The keys API: admins list, create, revoke and rotate their own team's keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from app.core.db import session_scope
from app.models import ApiKey
from app.teams.keys import parse_prefix
from tests.conftest import Team

PROBLEM = "application/problem+json"


def prefix_of(token: str) -> str:
    prefix = parse_prefix(token)
    assert prefix is not None
    return prefix


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def set_expiry(token: str, expires_at: datetime) -> None:
    """Move a key's expiry where the API would refuse to put it: the test controls time."""
    with session_scope() as session:
        session.execute(
            update(ApiKey).where(ApiKey.prefix == prefix_of(token)).values(expires_at=expires_at)
        )


def works(client: Any, token: str) -> bool:
    response = client.get("/v1/jobs", headers=bearer(token))
    assert response.status_code in (200, 401), response.text
    return bool(response.status_code == 200)


def create(client: Any, team: Team, **body: Any) -> Any:
    return client.post("/v1/keys", json={"role": "read"} | body, headers=team.headers())


def test_an_expired_key_is_401_saying_when_and_how_to_get_another(client: Any, team: Team) -> None:
    token = create(client, team, name="expiring").json()["token"]
    assert works(client, token)
    past = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    set_expiry(token, past)
    response = client.get("/v1/jobs", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.headers["www-authenticate"] == "Bearer"
    detail = response.json()["detail"]
    assert "expired at 2026-01-02T03:04:05+00:00" in detail
    assert "POST /v1/keys" in detail
    assert "priorforge keys create" in detail


def test_a_wrong_secret_learns_nothing_about_the_key(client: Any, team: Team) -> None:
    token = create(client, team).json()["token"]
    client.post(f"/v1/keys/{prefix_of(token)}/revoke", headers=team.headers())
    forged = f"pf_{prefix_of(token)}_not-the-secret"
    detail = client.get("/v1/jobs", headers=bearer(forged)).json()["detail"]
    assert "revoked" not in detail
    assert "unknown API key" in detail


def test_create_returns_the_token_once_and_list_and_get_never_do(client: Any, team: Team) -> None:
    created = create(client, team, role="submit", name="nightly ingest", expires_in_days=30)
    assert created.status_code == 201, created.text
    body = created.json()
    token, key = body["token"], body["key"]
    prefix = prefix_of(token)
    assert created.headers["location"] == f"/v1/keys/{prefix}"
    assert key["prefix"] == prefix
    assert (key["team"], key["role"], key["name"], key["state"]) == (
        team.name,
        "submit",
        "nightly ingest",
        "active",
    )
    expires = datetime.fromisoformat(key["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)
    assert key["current"] is False
    assert works(client, token)

    listed = client.get("/v1/keys", headers=team.headers())
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert items[0]["prefix"] == prefix  # newest first
    assert len(items) == 4  # the fixture's three keys and this one
    fetched = client.get(f"/v1/keys/{prefix}", headers=team.headers())
    assert fetched.json() == items[0]
    secret = token.split("_", 2)[2]
    for text in (listed.text, fetched.text):
        assert secret not in text
        assert "sha256" not in text
        assert "token" not in text
    own = [item for item in items if item["prefix"] == prefix_of(team.keys["admin"])]
    assert own[0]["current"] is True


def test_create_with_an_absolute_expiry(client: Any, team: Team) -> None:
    at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    created = create(client, team, expires_at=at.isoformat())
    assert created.status_code == 201, created.text
    assert datetime.fromisoformat(created.json()["key"]["expires_at"]) == at


def test_last_used_at_is_set_by_a_request_and_shown_by_list(client: Any, team: Team) -> None:
    token = create(client, team).json()["token"]

    def last_used() -> Any:
        items = client.get("/v1/keys", headers=team.headers()).json()["items"]
        return next(i for i in items if i["prefix"] == prefix_of(token))["last_used_at"]

    assert last_used() is None
    before = datetime.now(UTC)
    assert works(client, token)
    used = last_used()
    assert used is not None
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(used) <= datetime.now(UTC)


def test_revoke_stops_the_key_at_once_and_twice_keeps_the_first_time(
    client: Any, team: Team
) -> None:
    token = create(client, team, name="old").json()["token"]
    prefix = prefix_of(token)
    first = client.post(f"/v1/keys/{prefix}/revoke", headers=team.headers())
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "revoked"
    assert first.json()["note"] is None
    response = client.get("/v1/jobs", headers=bearer(token))
    assert response.status_code == 401
    assert "revoked at" in response.json()["detail"]
    again = client.post(f"/v1/keys/{prefix}/revoke", headers=team.headers())
    assert again.status_code == 200
    assert again.json()["revoked_at"] == first.json()["revoked_at"]

    active = client.get("/v1/keys", headers=team.headers()).json()["items"]
    assert prefix not in {i["prefix"] for i in active}
    everything = client.get(
        "/v1/keys", params={"include_inactive": "true"}, headers=team.headers()
    ).json()["items"]
    assert {i["prefix"]: i["state"] for i in everything}[prefix] == "revoked"


def test_list_shows_expired_keys_only_when_asked(client: Any, team: Team) -> None:
    token = create(client, team).json()["token"]
    set_expiry(token, datetime.now(UTC) - timedelta(seconds=1))
    active = client.get("/v1/keys", headers=team.headers()).json()["items"]
    assert prefix_of(token) not in {i["prefix"] for i in active}
    everything = client.get("/v1/keys?include_inactive=true", headers=team.headers()).json()
    assert {i["prefix"]: i["state"] for i in everything["items"]}[prefix_of(token)] == "expired"


def test_rotate_without_grace_revokes_the_old_key_at_once(client: Any, team: Team) -> None:
    old = create(client, team, role="submit", name="ci").json()["token"]
    rotated = client.post(f"/v1/keys/{prefix_of(old)}/rotate", headers=team.headers())
    assert rotated.status_code == 201, rotated.text
    body = rotated.json()
    new = body["token"]
    assert prefix_of(new) != prefix_of(old)
    assert rotated.headers["location"] == f"/v1/keys/{prefix_of(new)}"
    assert (body["key"]["role"], body["key"]["name"], body["key"]["team"]) == (
        "submit",
        "ci",
        team.name,
    )
    assert body["replaced"]["prefix"] == prefix_of(old)
    assert body["replaced"]["state"] == "revoked"
    assert not works(client, old)
    assert works(client, new)


def test_rotate_with_grace_keeps_the_old_key_working_until_then(client: Any, team: Team) -> None:
    old = create(client, team).json()["token"]
    rotated = client.post(
        f"/v1/keys/{prefix_of(old)}/rotate", json={"grace_seconds": 3600}, headers=team.headers()
    )
    assert rotated.status_code == 201, rotated.text
    replaced = rotated.json()["replaced"]
    assert replaced["state"] == "active"
    assert replaced["revoked_at"] is None
    until = datetime.fromisoformat(replaced["expires_at"])
    assert abs(until - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(minutes=1)
    new = rotated.json()["token"]
    assert works(client, old)
    assert works(client, new)
    set_expiry(old, datetime.now(UTC) - timedelta(seconds=1))  # the grace period is over
    response = client.get("/v1/jobs", headers=bearer(old))
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    assert works(client, new)


def test_only_an_active_key_can_be_rotated(client: Any, team: Team) -> None:
    token = create(client, team).json()["token"]
    client.post(f"/v1/keys/{prefix_of(token)}/revoke", headers=team.headers())
    response = client.post(f"/v1/keys/{prefix_of(token)}/rotate", headers=team.headers())
    assert response.status_code == 409
    assert response.headers["content-type"].startswith(PROBLEM)
    assert "is revoked" in response.json()["detail"]


def test_an_admin_may_revoke_its_own_key_and_is_told_so(client: Any, team: Team) -> None:
    own = prefix_of(team.keys["admin"])
    response = client.post(f"/v1/keys/{own}/revoke", headers=team.headers())
    assert response.status_code == 200, response.text
    assert response.json()["current"] is True
    assert "no longer works" in response.json()["note"]
    assert client.get("/v1/keys", headers=team.headers()).status_code == 401


def test_an_admin_may_rotate_its_own_key_and_is_told_so(client: Any, team: Team) -> None:
    own = prefix_of(team.keys["admin"])
    response = client.post(
        f"/v1/keys/{own}/rotate", json={"grace_seconds": 60}, headers=team.headers()
    )
    assert response.status_code == 201, response.text
    assert response.json()["replaced"]["current"] is True
    assert "works until" in response.json()["replaced"]["note"]
    assert response.json()["key"]["role"] == "admin"


def test_another_teams_key_is_404_and_left_alone(client: Any, team: Team, other_team: Team) -> None:
    theirs = prefix_of(other_team.keys["read"])
    for method, path in (
        ("GET", f"/v1/keys/{theirs}"),
        ("POST", f"/v1/keys/{theirs}/revoke"),
        ("POST", f"/v1/keys/{theirs}/rotate"),
    ):
        response = client.request(method, path, headers=team.headers())
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"].startswith(PROBLEM)
    listed = client.get("/v1/keys?include_inactive=true", headers=team.headers()).json()
    assert theirs not in {i["prefix"] for i in listed["items"]}
    assert works(client, other_team.keys["read"])


@pytest.mark.parametrize("role", ["read", "submit"])
def test_only_admins_manage_keys(client: Any, team: Team, role: str) -> None:
    target = prefix_of(team.keys["read"])
    for method, path, body in (
        ("GET", "/v1/keys", None),
        ("POST", "/v1/keys", {"role": "read"}),
        ("GET", f"/v1/keys/{target}", None),
        ("POST", f"/v1/keys/{target}/revoke", None),
        ("POST", f"/v1/keys/{target}/rotate", None),
    ):
        response = client.request(method, path, json=body, headers=team.headers(role))
        assert response.status_code == 403, (path, response.text)
        assert "'admin' is needed" in response.json()["detail"]
    assert works(client, team.keys["read"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"role": "read", "owner": True}, "owner"),
        ({"role": "superuser"}, "role"),
        ({"role": "read", "expires_at": "2020-01-01T00:00:00Z"}, "not in the future"),
        ({"role": "read", "expires_at": "2099-01-01T00:00:00"}, "timezone"),
        ({"role": "read", "expires_at": "soon"}, "expires_at"),
        ({"role": "read", "expires_in_days": 0}, "expires_in_days"),
        ({"role": "read", "expires_in_days": 3651}, "expires_in_days"),
        (
            {"role": "read", "expires_in_days": 1, "expires_at": "2099-01-01T00:00:00Z"},
            "not both",
        ),
        ({"role": "read", "name": "x" * 101}, "name"),
        ({"role": "read", "name": " \t "}, "name"),
    ],
)
def test_bad_create_bodies_are_422_problems(
    client: Any, team: Team, body: dict[str, Any], message: str
) -> None:
    response = client.post("/v1/keys", json=body, headers=team.headers())
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert message in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"grace_seconds": -1}, "grace_seconds"),
        ({"grace_seconds": 30 * 86400 + 1}, "grace_seconds"),
        ({"grace": 60}, "grace"),
    ],
)
def test_bad_rotate_bodies_are_422_and_change_nothing(
    client: Any, team: Team, body: dict[str, Any], message: str
) -> None:
    token = create(client, team).json()["token"]
    response = client.post(f"/v1/keys/{prefix_of(token)}/rotate", json=body, headers=team.headers())
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert message in response.json()["detail"]
    assert works(client, token)


@pytest.mark.parametrize("prefix", ["ABCDEF123456", "abc", "abcdefabcdef0", "pf_abcdefabcdef"])
def test_a_malformed_prefix_is_422(client: Any, team: Team, prefix: str) -> None:
    response = client.get(f"/v1/keys/{prefix}", headers=team.headers())
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)


def test_a_key_is_rotated_once_so_a_retry_mints_no_second_successor(
    client: Any, team: Team
) -> None:
    old = create(client, team).json()["token"]
    path = f"/v1/keys/{prefix_of(old)}/rotate"
    first = client.post(path, json={"grace_seconds": 600}, headers=team.headers())
    assert first.status_code == 201, first.text
    successor = prefix_of(first.json()["token"])
    again = client.post(path, json={"grace_seconds": 600}, headers=team.headers())
    assert again.status_code == 409
    assert f"its replacement is {successor}" in again.json()["detail"]
    listed = client.get("/v1/keys", headers=team.headers()).json()["items"]
    assert len(listed) == 5  # the fixture's three keys, the old one (in its grace) and one new
    assert works(client, old)


def test_a_grace_period_never_extends_an_earlier_expiry(client: Any, team: Team) -> None:
    soon = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    old = create(client, team, expires_at=soon.isoformat()).json()["token"]
    rotated = client.post(
        f"/v1/keys/{prefix_of(old)}/rotate",
        json={"grace_seconds": 86400},
        headers=team.headers(),
    )
    assert rotated.status_code == 201, rotated.text
    assert datetime.fromisoformat(rotated.json()["replaced"]["expires_at"]) == soon
