"""The pure parts of API keys: durations, instants and a key's state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.teams.keys import KeyState, parse_duration, parse_instant, state

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(days=14)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 1H ", timedelta(hours=1)),
        ("0s", timedelta(0)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "90", "d", "1.5h", "-1d", "1y", "1d 2h", "999999999w"])
def test_bad_durations_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a duration|longer than"):
        parse_duration(text)


def test_instants_need_an_offset_and_come_back_in_utc() -> None:
    assert parse_instant("2027-01-31T02:00:00+02:00") == datetime(2027, 1, 31, tzinfo=UTC)
    assert parse_instant("2027-01-31T00:00Z") == datetime(2027, 1, 31, tzinfo=UTC)
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_instant("2027-01-31T00:00")
    with pytest.raises(ValueError, match="not an ISO-8601 time"):
        parse_instant("next tuesday")


def test_state_revocation_wins_over_expiry() -> None:
    assert state(None, None, NOW) is KeyState.ACTIVE
    assert state(None, NOW + timedelta(seconds=1), NOW) is KeyState.ACTIVE
    assert state(None, NOW, NOW) is KeyState.EXPIRED
    assert state(NOW, NOW - timedelta(days=1), NOW) is KeyState.REVOKED
