"""``priorforge eval-sets``: evaluation sets generated documents must not leak."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from app.cli.common import LOCAL_TEAM, TeamOpt, console, ensure_schema, fail, local_principal
from app.core.errors import PriorForgeError

evalsets_cli = typer.Typer(
    no_args_is_help=True, help="Evaluation sets generated documents must not leak."
)


@evalsets_cli.command("add")
def evalsets_add(
    name: Annotated[str, typer.Argument(help="A name: lowercase letters, digits, - and _.")],
    path: Annotated[Path, typer.Argument(help='JSONL: {"text": ..., "id": ...} per line.')],
    team: TeamOpt = LOCAL_TEAM,
) -> None:
    """Register an evaluation set for the jobs this command line runs."""
    import re

    from app.core.db import session_scope
    from app.evalsets import service as evalsets

    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name):
        raise fail(f"{name!r} is not a valid name: use lowercase letters, digits, - and _")
    try:
        body = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"{path}: {exc}") from None
    ensure_schema()
    try:
        with session_scope() as session:
            principal = local_principal(session, team_name=team)
            row, too_short = evalsets.register(session, principal, name, body)
            items, sha = row.items, row.sha256
    except PriorForgeError as exc:
        errors = exc.extensions.get("errors", [])
        lines = "".join(f"\n  line {e.get('line', '?')}: {e['message']}" for e in errors)
        raise fail(exc.detail + lines) from None
    console.print(
        f"registered [bold]{name}[/]: {items} items, sha256 {sha[:12]}…"
        + (
            f"; {too_short} under 8 words are checked only by jobs whose decontam.ngram is "
            "at most their length"
            if too_short
            else ""
        )
    )


@evalsets_cli.command("list")
def evalsets_list(team: TeamOpt = LOCAL_TEAM) -> None:
    """The evaluation sets registered for a team's jobs."""
    from app.core.db import session_scope
    from app.evalsets import service as evalsets

    ensure_schema()
    table = Table("name", "items", "sha256", "registered")
    with session_scope() as session:
        for row in evalsets.list_sets(session, local_principal(session, team_name=team)):
            table.add_row(row.name, str(row.items), row.sha256[:12], row.created_at.isoformat())
    console.print(table)
