"""`priorforge keys` as an operator runs it, against the database the API serves from."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from tests.teams.test_api import bearer, prefix_of, works
from tests.test_cli import priorforge


@pytest.fixture
def env() -> dict[str, str]:
    """The test run's Postgres: what the command line does, the API sees at once."""
    return dict(os.environ) | {"COLUMNS": "250"}


def row(listing: str, prefix: str) -> list[str]:
    """The cells of the table row that names ``prefix``."""
    line = next(line for line in listing.splitlines() if prefix in line)
    return [cell.strip() for cell in line.strip("│ ").split("│")]


def test_create_list_revoke_rotate(client: Any, env: dict[str, str]) -> None:
    team = f"cli-{uuid.uuid4().hex[:8]}"
    created = priorforge(
        "keys", "create", "--team", team, "--role", "submit", "--name", "ci runner",
        "--expires-in", "90d", env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert created.stdout.splitlines() == [token]
    prefix = prefix_of(token)
    assert f"created submit key {prefix}" in created.stderr
    assert "expiring" in " ".join(created.stderr.split())

    listed = priorforge("keys", "list", "--team", team, env=env)
    assert listed.returncode == 0, listed.stderr
    cells = row(listed.stdout, prefix)
    assert cells[1:4] == [team, "submit", "ci runner"]
    assert cells[5] == "never"  # last used
    assert cells[6] != "never"  # expires in 90 days
    assert cells[7] == "active"

    assert works(client, token)
    used = row(priorforge("keys", "list", "--team", team, env=env).stdout, prefix)
    assert used[5] != "never"

    revoked = priorforge("keys", "revoke", prefix, env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked at" in revoked.stdout
    response = client.get("/v1/jobs", headers=bearer(token))
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    again = priorforge("keys", "revoke", prefix, env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout == revoked.stdout  # the first revocation time stands
    assert prefix not in priorforge("keys", "list", "--team", team, env=env).stdout
    everything = priorforge("keys", "list", "--team", team, "--all", env=env)
    assert row(everything.stdout, prefix)[7] == "revoked"

    second = priorforge("keys", "create", "--team", team, "--role", "read", env=env)
    old = second.stdout.strip()
    graced = priorforge("keys", "rotate", prefix_of(old), "--grace", "1h", env=env)
    assert graced.returncode == 0, graced.stderr
    new = graced.stdout.strip()
    assert graced.stdout.splitlines() == [new]
    assert "works until" in graced.stderr
    assert works(client, old)
    assert works(client, new)
    assert row(priorforge("keys", "list", "--all", env=env).stdout, prefix_of(new))[2] == "read"

    final = priorforge("keys", "rotate", prefix_of(new), env=env)
    assert final.returncode == 0, final.stderr
    assert "is revoked" in final.stderr
    assert not works(client, new)
    assert works(client, final.stdout.strip())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "--team", "t", "--expires-in", "90 days"], "--expires-in: '90 days' is not"),
        (["create", "--team", "t", "--expires-at", "2020-01-01T00:00Z"], "not in the future"),
        (["create", "--team", "t", "--expires-at", "2099-01-01"], "no UTC offset"),
        (
            ["create", "--team", "t", "--expires-in", "1d", "--expires-at", "2099-01-01T00:00Z"],
            "not both",
        ),
        (
            ["create", "--team", "t", "--role", "root"],
            "--role must be one of operator, admin, submit",
        ),
        (["revoke", "0123456789ab"], "no API key with prefix '0123456789ab'"),
        (["rotate", "0123456789ab"], "keys list --all"),
        (["revoke", "pf_0123456789ab_secret"], "the 12 hex characters after 'pf_'"),
        (["rotate", "0123456789ab", "--grace", "soon"], "--grace: 'soon' is not a duration"),
        (["rotate", "0123456789ab", "--grace", "31d"], "between 0 and 30 days"),
        (["list", "--team", "no-such-team"], "no team named 'no-such-team'"),
    ],
)
def test_bad_input_exits_2_naming_the_fix(
    env: dict[str, str], args: list[str], message: str
) -> None:
    result = priorforge("keys", *args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in " ".join(result.stderr.split())
    assert result.stdout == ""
