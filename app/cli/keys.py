"""``priorforge keys``: API keys."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from app.cli.common import console, ensure_schema, err, fail
from app.core.errors import PriorForgeError

if TYPE_CHECKING:
    from app.teams.keys import Role

keys_cli = typer.Typer(no_args_is_help=True, help="API keys.")


def _parse_role(role: str) -> Role:
    from app.teams.keys import Role

    try:
        return Role(role)
    except ValueError:
        raise fail(f"--role must be one of operator, admin, submit, read (got {role!r})") from None


def _parse_expiry(expires_in: str | None, expires_at: str | None) -> datetime | None:
    """The expiry the flags ask for, or None; the service checks it lies in the future."""
    from app.models.base import utcnow
    from app.teams.keys import parse_duration, parse_instant

    if expires_in is not None and expires_at is not None:
        raise fail("give --expires-in or --expires-at, not both")
    try:
        if expires_in is not None:
            return utcnow() + parse_duration(expires_in)
        return parse_instant(expires_at) if expires_at is not None else None
    except ValueError as exc:
        flag = "--expires-in" if expires_in is not None else "--expires-at"
        raise fail(f"{flag}: {exc}") from None


def _check_prefix(prefix: str) -> str:
    import re

    from app.teams.keys import PREFIX_PATTERN

    if not re.fullmatch(PREFIX_PATTERN, prefix):
        raise fail(
            f"{prefix!r} is not a key prefix: give the 12 hex characters after 'pf_' "
            "(see 'priorforge keys list --all')"
        )
    return prefix


def _key_failure(exc: PriorForgeError) -> typer.Exit:
    hint = " (see 'priorforge keys list --all')" if exc.status == 404 else ""
    return fail(exc.detail + hint)


@keys_cli.command("create")
def keys_create(
    team: Annotated[str, typer.Option(help="Team name; created if it does not exist.")],
    role: Annotated[str, typer.Option(help="operator | admin | submit | read")] = "submit",
    name: Annotated[str | None, typer.Option(help="A label, e.g. who or what uses it.")] = None,
    expires_in: Annotated[
        str | None, typer.Option(help="Lifetime, e.g. 90d, 12h, 30m (units w d h m s).")
    ] = None,
    expires_at: Annotated[
        str | None, typer.Option(help="Expiry as ISO-8601 with an offset, e.g. 2027-01-31T00:00Z.")
    ] = None,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from app.core.db import session_scope
    from app.teams.service import create_key, when

    parsed = _parse_role(role)
    expiry = _parse_expiry(expires_in, expires_at)
    ensure_schema()
    try:
        with session_scope() as session:
            issued = create_key(session, team, parsed, name=name, expires_at=expiry)
    except PriorForgeError as exc:
        raise fail(exc.detail) from None
    until = f", expiring {when(expiry)}" if expiry is not None else ""
    err.print(
        f"created {parsed.value} key {issued.view.key.prefix} for team {issued.team.name!r}"
        f"{escape(until)}; it is shown only once:"
    )
    print(issued.token)  # noqa: T201  (stdout carries only the key, for scripts)


@keys_cli.command("list")
def keys_list(
    team: Annotated[str | None, typer.Option(help="Only this team's keys.")] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Include revoked and expired keys.")
    ] = False,
) -> None:
    """List API keys, newest first: prefix, team, role, name, dates and state."""
    from app.core.db import session_scope
    from app.teams.service import find_team, list_keys, when

    ensure_schema()
    try:
        with session_scope() as session:
            team_id = find_team(session, team).id if team is not None else None
            views = list_keys(session, team_id=team_id, include_inactive=show_all)
    except PriorForgeError as exc:
        raise fail(exc.detail) from None
    table = Table("prefix", "team", "role", "name", "created", "last used", "expires", "state")
    for view in views:
        key = view.key
        table.add_row(
            key.prefix,
            escape(view.team),
            key.role,
            escape(key.name or ""),
            when(key.created_at),
            when(key.last_used_at) if key.last_used_at else "never",
            when(key.expires_at) if key.expires_at else "never",
            view.state.value,
        )
    console.print(table)
    if not views:
        err.print("no keys" + ("" if show_all else " (--all also shows revoked and expired keys)"))


@keys_cli.command("revoke")
def keys_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's 12 hex characters after 'pf_'.")],
) -> None:
    """Revoke a key at once (revoking it again changes nothing)."""
    from app.core.db import session_scope
    from app.teams.service import revoke_key, when

    _check_prefix(prefix)
    ensure_schema()
    try:
        with session_scope() as session:
            view = revoke_key(session, prefix, team_id=None)
    except PriorForgeError as exc:
        raise _key_failure(exc) from None
    console.print(f"key {prefix} of team {view.team!r} revoked at {when(view.key.revoked_at)}")


@keys_cli.command("rotate")
def keys_rotate(
    prefix: Annotated[str, typer.Argument(help="The key's 12 hex characters after 'pf_'.")],
    grace: Annotated[
        str | None,
        typer.Option(help="Let the old key work this long, e.g. 1h (default: revoke it now)."),
    ] = None,
) -> None:
    """Replace a key with a new one of the same team, role and name; print the new one once."""
    from app.core.db import session_scope
    from app.teams.keys import parse_duration
    from app.teams.service import rotate_key, when

    _check_prefix(prefix)
    try:
        period = parse_duration(grace) if grace is not None else None
    except ValueError as exc:
        raise fail(f"--grace: {exc}") from None
    ensure_schema()
    try:
        with session_scope() as session:
            issued, old = rotate_key(session, prefix, team_id=None, grace=period)
    except PriorForgeError as exc:
        raise _key_failure(exc) from None
    fate = f"works until {when(old.key.expires_at)}" if old.key.revoked_at is None else "is revoked"
    err.print(
        f"key {prefix} {fate}; its replacement {issued.view.key.prefix} for team "
        f"{issued.team.name!r} is shown only once:"
    )
    print(issued.token)  # noqa: T201  (stdout carries only the key, for scripts)
