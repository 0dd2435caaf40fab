"""The pure parts of API keys: durations, instants and a key's state."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from app.teams import keys
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


def test_a_new_key_has_a_12_hex_prefix_and_a_43_character_secret() -> None:
    first, second = keys.generate(), keys.generate()
    assert re.fullmatch(keys.PREFIX_PATTERN, first.prefix)
    assert len(first.secret) == 43  # 32 random bytes, URL-safe base64
    assert first.secret != second.secret
    assert keys.parse_prefix(first.token) == first.prefix


@pytest.mark.parametrize(
    "token",
    [
        "pf_0123456789ab",  # no secret part
        "px_0123456789ab_secret",  # not ours
        "pf_0123456789a_secret",  # prefix one short
        "pf_0123456789abc_secret",  # one long
        "pf_0123456789ab_",  # empty secret
    ],
)
def test_a_token_of_another_shape_has_no_prefix(token: str) -> None:
    assert keys.parse_prefix(token) is None


def test_the_longest_duration_is_accepted_and_one_second_more_is_not() -> None:
    days = keys.MAX_DURATION.days
    assert keys.parse_duration(f"{days}d") == keys.MAX_DURATION
    with pytest.raises(ValueError, match="longer than"):
        keys.parse_duration(f"{days}d1s")


def test_an_instant_with_an_offset_is_returned_in_utc() -> None:
    instant = keys.parse_instant("2027-01-31T02:00:00+02:00")
    assert instant == datetime(2027, 1, 31, 0, 0, tzinfo=UTC)
    assert instant.utcoffset() == timedelta(0)
    assert instant.tzinfo is UTC
