"""An operator key manages the deployment's teams and their quotas; no other key may."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import Team, spec


def test_only_an_operator_lists_creates_and_sets_quotas(client: Any, team: Team) -> None:
    for role in ("read", "submit", "admin"):
        refused = client.get("/v1/teams", headers=team.headers(role))
        assert refused.status_code == 403, role
        assert refused.headers["content-type"] == "application/problem+json"
    assert client.post("/v1/teams", json={"name": "x"}, headers=team.headers()).status_code == 403
    team.add_operator()
    listed = client.get("/v1/teams", headers=team.headers("operator"))
    assert listed.status_code == 200
    mine = [t for t in listed.json()["items"] if t["name"] == team.name]
    assert mine[0]["quotas"] == {"max_active_jobs": None, "max_documents_per_job": None}
    assert mine[0]["max_active_jobs"] >= 1


def test_a_new_team_comes_with_an_admin_key_that_works_once_shown(client: Any, team: Team) -> None:
    team.add_operator()
    name = f"new-{uuid.uuid4().hex[:8]}"
    created = client.post("/v1/teams", json={"name": name}, headers=team.headers("operator"))
    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["location"] == f"/v1/teams/{name}"
    assert body["team"]["name"] == name
    assert body["admin_key"]["key"]["role"] == "admin"
    token = body["admin_key"]["token"]
    own = client.get("/v1/keys", headers={"Authorization": f"Bearer {token}"})
    assert own.status_code == 200
    assert [key["team"] for key in own.json()["items"]] == [name]
    # The new team's admin manages its own team only.
    again = client.post("/v1/teams", json={"name": name}, headers=team.headers("operator"))
    assert again.status_code == 409
    bad = client.post("/v1/teams", json={"name": "Not A Name"}, headers=team.headers("operator"))
    assert bad.status_code == 422
    assert client.get(f"/v1/teams/{name}", headers=team.headers("operator")).json()["name"] == name
    assert client.get("/v1/teams/none-such", headers=team.headers("operator")).status_code == 404


def test_a_teams_own_quotas_bind_its_next_submission_and_null_gives_back_the_default(
    client: Any, team: Team
) -> None:
    team.add_operator()
    operator = team.headers("operator")
    url = f"/v1/teams/{team.name}"
    set_ = client.patch(
        url, json={"max_documents_per_job": 5, "max_active_jobs": 1}, headers=operator
    )
    assert set_.status_code == 200, set_.text
    assert set_.json()["max_documents_per_job"] == 5
    assert set_.json()["quotas"] == {"max_active_jobs": 1, "max_documents_per_job": 5}

    too_big = client.post("/v1/jobs", json=spec(documents=6), headers=team.headers())
    assert too_big.status_code == 409
    assert "quota of 5 per job" in too_big.json()["detail"]
    first = client.post("/v1/jobs", json=spec(documents=5), headers=team.headers())
    assert first.status_code == 202
    second = client.post("/v1/jobs", json=spec(documents=5), headers=team.headers())
    assert second.status_code == 429
    assert second.headers["retry-after"]

    # A field left out keeps its value; null is the deployment's again.
    kept = client.patch(url, json={"max_active_jobs": None}, headers=operator).json()
    assert kept["quotas"] == {"max_active_jobs": None, "max_documents_per_job": 5}
    assert (
        client.post("/v1/jobs", json=spec(documents=5), headers=team.headers()).status_code == 202
    )
    for bad in ({"max_active_jobs": 0}, {"max_active_jobs": "3"}, {"other": 1}):
        assert client.patch(url, json=bad, headers=operator).status_code == 422, bad
    assert client.patch(url, json={"max_active_jobs": 2}, headers=team.headers()).status_code == 403


def test_an_admin_can_neither_rotate_nor_revoke_an_operators_key(client: Any, team: Team) -> None:
    """Rotating gives the caller the new token: an admin who rotated the operator's key
    would hold an operator key."""
    token = team.add_operator()
    prefix = token.split("_")[1]
    rotated = client.post(
        f"/v1/keys/{prefix}/rotate", json={"grace_seconds": 60}, headers=team.headers()
    )
    assert rotated.status_code == 403
    assert "cannot rotate a 'operator' key" in rotated.json()["detail"]
    revoked = client.post(f"/v1/keys/{prefix}/revoke", headers=team.headers())
    assert revoked.status_code == 403
    assert client.get("/v1/teams", headers=team.headers("operator")).status_code == 200
    # The operator itself may; an admin still rotates an admin key.
    mine = team.keys["admin"].split("_")[1]
    assert client.post(f"/v1/keys/{mine}/rotate", headers=team.headers()).status_code == 201
    assert (
        client.post(f"/v1/keys/{prefix}/revoke", headers=team.headers("operator")).status_code
        == 200
    )
