"""A dataset shared with another team: that team reads it, with ?owner=, and writes nothing."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from app.pull import Client, PullError, pull
from tests.conftest import Team, run_local, spec
from tests.pull.test_pull import Server


@pytest.fixture
def api() -> Any:
    server = Server()
    yield server
    server.stop()


@pytest.mark.usefixtures("llm")
def test_a_shared_dataset_is_read_only_to_the_team_it_is_shared_with(
    client: Any,
    team: Team,
    other_team: Team,
    settings: Any,
    store: Any,
    api: Server,
    tmp_path: Path,
) -> None:
    name = f"shared-{uuid.uuid4().hex[:6]}"
    assert run_local(team, spec(dataset=name, documents=2), settings, store).job.status == (
        "succeeded"
    )
    assert client.post(f"/v1/datasets/{name}/versions", headers=team.headers()).status_code == 201
    theirs = other_team.headers("read")
    versions = f"/v1/datasets/{name}/versions?owner={team.name}"
    hidden = client.get(versions, headers=theirs)
    assert hidden.status_code == 404
    assert hidden.json()["detail"] == (
        f"dataset {name!r} of team {team.name!r} not found (or not shared with you)"
    )
    missing = client.get(f"/v1/datasets/{name}/versions?owner=no-such-team", headers=theirs)
    assert missing.json()["detail"] == hidden.json()["detail"].replace(team.name, "no-such-team")

    share = f"/v1/datasets/{name}/shares"
    assert (
        client.post(
            share, json={"team": other_team.name}, headers=team.headers("submit")
        ).status_code
        == 403
    )
    assert (
        client.post(share, json={"team": other_team.name}, headers=team.headers()).status_code
        == 201
    )
    assert (
        client.post(share, json={"team": other_team.name}, headers=team.headers()).status_code
        == 200
    )
    own = client.post(share, json={"team": team.name}, headers=team.headers())
    assert own.status_code == 409
    listed = client.get(share, headers=team.headers()).json()
    assert [s["team"] for s in listed] == [other_team.name]

    assert [v["version"] for v in client.get(versions, headers=theirs).json()] == [1]
    seen = {
        (d["name"], d["owner"], d["shared"])
        for d in client.get("/v1/datasets", headers=theirs).json()
    }
    assert (name, team.name, True) in seen
    mine = {
        (d["name"], d["shared"]) for d in client.get("/v1/datasets", headers=team.headers()).json()
    }
    assert (name, False) in mine
    manifest = client.get(
        f"/v1/datasets/{name}/versions/1/manifest?owner={team.name}", headers=theirs
    )
    assert manifest.status_code == 200
    path = manifest.json()["files"][0]["path"]
    served = client.get(
        f"/v1/datasets/{name}/versions/1/files/{path}?owner={team.name}", headers=theirs
    )
    assert served.status_code == 200
    report = pull(Client(api.url, other_team.keys["read"]), name, None, tmp_path, owner=team.name)
    assert report.files_downloaded == len(manifest.json()["files"])

    # Read-only: the other team cannot snapshot it, share it, or find it without the owner.
    admin = other_team.headers()
    assert client.post(f"/v1/datasets/{name}/versions", headers=admin).status_code == 404
    assert client.post(share, json={"team": other_team.name}, headers=admin).status_code == 404
    assert client.get(f"/v1/datasets/{name}/versions", headers=theirs).status_code == 404

    gone = client.delete(f"{share}/{other_team.name}", headers=team.headers())
    assert gone.status_code == 204
    assert client.get(versions, headers=theirs).status_code == 404
    with pytest.raises(PullError, match="404"):
        pull(
            Client(api.url, other_team.keys["read"]),
            name,
            None,
            tmp_path / "again",
            owner=team.name,
        )
    again = client.delete(f"{share}/{other_team.name}", headers=team.headers())
    assert again.status_code == 404
