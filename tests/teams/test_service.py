"""The teams service's contracts at their edges, called directly on the test database: what
each refusal says (these texts are the API's problem details and the CLI's messages), where
each limit sits, and what a rotation or a request changes on the key."""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text

from app.core.db import get_sessionmaker, session_scope
from app.core.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthorized
from app.models import ApiKey
from app.teams import service
from app.teams.keys import KeyState, Role
from app.teams.service import MAX_GRACE, MAX_LIFETIME, MAX_NAME, Principal

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The service's clock stopped at NOW."""
    monkeypatch.setattr(service, "utcnow", lambda: NOW)
    return NOW


@pytest.fixture
def team() -> str:
    return f"svc-{uuid.uuid4().hex[:12]}"


def issue(team: str, role: Role = Role.ADMIN, **options: object) -> service.IssuedKey:
    with session_scope() as session:
        return service.create_key(session, team, role, **options)  # type: ignore[arg-type]


def refusal(error: type[Exception], call: object, *args: object, **kwargs: object) -> Exception:
    with session_scope() as session, pytest.raises(error) as caught:
        call(session, *args, **kwargs)  # type: ignore[operator]
    return caught.value


def test_a_bad_team_name_is_refused_saying_what_a_name_is() -> None:
    error = refusal(InvalidRequest, service.ensure_team, "Not A Name")
    assert error.detail == (  # type: ignore[attr-defined]
        "team name 'Not A Name' must be 1-64 characters of a-z, 0-9, '.', '_' or '-'"
    )


def test_when_shows_an_instant_to_the_second_and_none_as_a_dash() -> None:
    assert service.when(None) == "-"
    assert service.when(NOW + timedelta(microseconds=5)) == "2026-12-05T12:00:00+00:00"


def test_a_created_key_keeps_its_name_role_expiry_and_creation_time(
    frozen: datetime, team: str
) -> None:
    expires = frozen + timedelta(days=3)
    issued = issue(team, Role.READ, name="nightly export", expires_at=expires)
    assert issued.role is Role.READ
    assert issued.view.key.name == "nightly export"
    assert issued.view.key.expires_at == expires
    assert issued.view.key.created_at == frozen
    assert issued.view.state is KeyState.ACTIVE


def test_a_key_name_of_the_longest_length_is_kept_and_one_longer_is_refused(team: str) -> None:
    assert issue(team, name="n" * MAX_NAME).view.key.name == "n" * MAX_NAME
    for name in ("n" * (MAX_NAME + 1), "   "):
        error = refusal(InvalidRequest, service.create_key, team, Role.READ, name=name)
        assert error.detail == (  # type: ignore[attr-defined]
            f"the key's name must be 1-{MAX_NAME} characters, not blank, no NUL (got {name!r})"
        )


def test_expiries_at_the_limits(frozen: datetime, team: str) -> None:
    assert issue(team, expires_at=frozen + MAX_LIFETIME).view.key.expires_at is not None
    late = frozen + MAX_LIFETIME + timedelta(microseconds=1)
    error = refusal(InvalidRequest, service.create_key, team, Role.READ, expires_at=late)
    assert error.detail == (  # type: ignore[attr-defined]
        f"the expiry {service.when(late)} is more than 100 years away; choose an earlier time"
    )
    error = refusal(InvalidRequest, service.create_key, team, Role.READ, expires_at=frozen)
    assert error.detail == (  # type: ignore[attr-defined]
        "the expiry 2026-12-05T12:00:00+00:00 is not in the future "
        "(now is 2026-12-05T12:00:00+00:00); choose a later time"
    )
    naive = datetime(2027, 1, 1)  # noqa: DTZ001 - the point of the test
    error = refusal(InvalidRequest, service.create_key, team, Role.READ, expires_at=naive)
    assert error.detail == "the expiry needs a UTC offset, e.g. 2027-01-31T00:00:00Z"  # type: ignore[attr-defined]
    edge = datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5)))
    error = refusal(InvalidRequest, service.create_key, team, Role.READ, expires_at=edge)
    assert error.detail == f"the expiry {edge.isoformat()} is out of range"  # type: ignore[attr-defined]


def test_an_expiry_with_an_offset_is_stored_in_utc_whatever_the_hosts_zone(
    monkeypatch: pytest.MonkeyPatch, team: str
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        local = datetime(2027, 1, 1, 9, 0, tzinfo=timezone(timedelta(hours=5)))
        stored = issue(team, expires_at=local).view.key.expires_at
    finally:
        monkeypatch.undo()
        time.tzset()
    assert stored is not None
    assert stored.utcoffset() == timedelta(0)
    assert (stored.hour, stored.tzinfo) == (4, UTC)
    assert os.environ.get("TZ") != "America/New_York"


def test_a_key_cannot_mint_a_higher_role_nor_for_a_team_that_is_gone(team: str) -> None:
    reader = issue(team, Role.READ)
    principal = Principal(reader.team.id, Role.READ, reader.view.key.id)
    error = refusal(Forbidden, service.issue_key, principal, Role.SUBMIT)
    assert error.detail == (  # type: ignore[attr-defined]
        "a 'read' key cannot create a 'submit' key; choose an equal or lower role"
    )
    orphan = Principal(uuid.uuid4(), Role.ADMIN, uuid.uuid4())
    error = refusal(NotFound, service.issue_key, orphan, Role.READ)
    assert error.detail == "the team of this API key no longer exists"  # type: ignore[attr-defined]


def test_an_unknown_prefix_is_named_and_scoped_in_the_message() -> None:
    error = refusal(NotFound, service.get_key, "0123456789ab", team_id=None)
    assert error.detail == "no API key with prefix '0123456789ab'"  # type: ignore[attr-defined]
    error = refusal(NotFound, service.get_key, "0123456789ab", team_id=uuid.uuid4())
    assert error.detail == "no API key with prefix '0123456789ab' in this team"  # type: ignore[attr-defined]


def test_listing_leaves_out_revoked_keys_unless_asked(team: str) -> None:
    kept, revoked = issue(team), issue(team)
    with session_scope() as session:
        view = service.revoke_key(session, revoked.view.key.prefix, team_id=None)
        assert view.state is KeyState.REVOKED
    team_id = kept.team.id
    with session_scope() as session:
        active = [v.key.prefix for v in service.list_keys(session, team_id=team_id)]
        every = service.list_keys(session, team_id=team_id, include_inactive=True)
    assert active == [kept.view.key.prefix]
    assert {v.key.prefix for v in every} == {kept.view.key.prefix, revoked.view.key.prefix}


def test_rotation_limits_and_refusals(frozen: datetime, team: str) -> None:
    for grace in (timedelta(seconds=-1), MAX_GRACE + timedelta(seconds=1)):
        error = refusal(
            InvalidRequest, service.rotate_key, "0123456789ab", team_id=None, grace=grace
        )
        assert error.detail == "the grace period must be between 0 and 30 days"  # type: ignore[attr-defined]
    key = issue(team, expires_at=frozen + timedelta(days=1)).view.key
    with session_scope() as session:
        session.execute(text("UPDATE api_key SET expires_at = :t WHERE id = :id"),
                        {"t": frozen, "id": key.id})  # fmt: skip
    error = refusal(Conflict, service.rotate_key, key.prefix, team_id=None)
    assert error.detail == (  # type: ignore[attr-defined]
        f"API key {key.prefix} is expired; rotate only an active key, or create a new one "
        "('priorforge keys create' or POST /v1/keys)"
    )
    assert error.extensions == {"state": "expired"}  # type: ignore[attr-defined]


def test_a_rotation_with_the_longest_grace_or_none_and_a_second_rotation(
    frozen: datetime, team: str
) -> None:
    old = issue(team).view.key
    with session_scope() as session:
        new, previous = service.rotate_key(session, old.prefix, team_id=None, grace=MAX_GRACE)
        assert previous.key.expires_at == frozen + MAX_GRACE
        assert previous.state is KeyState.ACTIVE
    error = refusal(Conflict, service.rotate_key, old.prefix, team_id=None)
    assert error.detail == (  # type: ignore[attr-defined]
        f"API key {old.prefix} was already rotated; its replacement is "
        f"{new.view.key.prefix}: rotate that one"
    )
    assert error.extensions == {"replaced_by": new.view.key.prefix}  # type: ignore[attr-defined]
    for grace in (None, timedelta(0)):
        other = issue(team).view.key
        with session_scope() as session:
            _new, previous = service.rotate_key(session, other.prefix, team_id=None, grace=grace)
        assert previous.state is KeyState.REVOKED
        assert previous.key.expires_at is None


def test_a_second_rotation_waits_for_the_first_and_is_refused(team: str) -> None:
    key = issue(team).view.key
    grace = timedelta(hours=1)  # the old key stays active: only its successor mark refuses
    first = get_sessionmaker()()
    outcome: list[BaseException | None] = []

    def second() -> None:
        try:
            with session_scope() as session:
                service.rotate_key(session, key.prefix, team_id=None, grace=grace)
            outcome.append(None)
        except BaseException as exc:  # reported below
            outcome.append(exc)

    racer = threading.Thread(target=second)
    try:
        service.rotate_key(first, key.prefix, team_id=None, grace=grace)  # locks the key's row
        racer.start()
        wait_for_a_lock_wait()
        first.commit()
    finally:
        first.close()
    racer.join(30)
    # It waited before deciding, so it saw the first's mark: one successor, not two.
    [refused] = outcome
    assert isinstance(refused, Conflict), refused
    assert "was already rotated" in refused.detail
    with session_scope() as session:
        teams_keys = session.scalars(select(ApiKey).where(ApiKey.team_id == key.team_id)).all()
    assert len(teams_keys) == 2


def wait_for_a_lock_wait(timeout: float = 10) -> None:
    """Return once a session of this database waits on a lock (fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while time.monotonic() < deadline:
        with session_scope() as session:
            if session.scalar(query):
                return
        time.sleep(0.02)
    raise AssertionError(f"no session waited on a lock within {timeout} s")


def test_refused_keys_say_when_and_which_state(frozen: datetime, team: str) -> None:
    revoked = issue(team)
    with session_scope() as session:
        service.revoke_key(session, revoked.view.key.prefix, team_id=None)
    error = refusal(Unauthorized, service.authenticate, revoked.token)
    assert error.detail == (  # type: ignore[attr-defined]
        f"API key {revoked.view.key.prefix} was revoked at 2026-12-05T12:00:00+00:00; "
        f"{service.NEW_KEY_HINT}"
    )
    assert error.extensions == {"state": "revoked"}  # type: ignore[attr-defined]
    expired = issue(team, expires_at=frozen + timedelta(hours=1))
    later = frozen + timedelta(hours=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service, "utcnow", lambda: later)
        error = refusal(Unauthorized, service.authenticate, expired.token)
    assert error.extensions == {"state": "expired"}  # type: ignore[attr-defined]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    now = [NOW]
    monkeypatch.setattr(service, "utcnow", lambda: now[0])
    return now


def last_used(key_id: uuid.UUID) -> datetime | None:
    with session_scope() as session:
        return session.get(ApiKey, key_id).last_used_at  # type: ignore[union-attr]


def test_a_request_records_its_key_at_most_once_a_minute(clock: list[datetime], team: str) -> None:
    issued = issue(team)
    for offset in (0, 30, 60, 61, 90):
        clock[0] = NOW + timedelta(seconds=offset)
        with session_scope() as session:
            service.authenticate(session, issued.token)
    # Written at 0 s, not at 30 s or exactly a minute later, then at 61 s, not at 90 s.
    assert last_used(issued.view.key.id) == NOW + timedelta(seconds=61)


def test_a_team_is_found_by_its_name_and_a_missing_one_is_named(team: str) -> None:
    issued = issue(team)
    with session_scope() as session:
        assert service.find_team(session, team).id == issued.team.id
    missing = f"{team}-gone"
    error = refusal(NotFound, service.find_team, missing)
    assert error.detail == f"no team named {missing!r}"  # type: ignore[attr-defined]
